"""Serving the index to other programs: the tools an agent calls (``tools``) and the MCP server over
stdio that exposes them (``mcp_server``). Models are loaded once per server and reused by every call."""

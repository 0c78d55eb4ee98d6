"""Any OpenAI-compatible server (vLLM, SGLang, Ollama): keyframes sent as JPEG data URLs.

Credentials stay with the server they are for: redirects are never followed (a 3xx is an error that names
where it points), a ``user:password@`` in ``--api-base`` becomes HTTP Basic auth and leaves the URL, and
the key and password are blanked out of every message (also where a server's error body echoes them)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
from typing import Any

from pipelines.answerers.base import Answer, Answerer, AnswerRequest
from pipelines.answerers.prompt import (
    budgets_of,
    finish,
    fit_to_budget,
    frame_labels,
    prompt_body,
    query_of,
    select_context,
)
from pipelines.errors import ModelError

# --- OpenAI-compatible servers ------------------------------------------------------------------------

class OpenAIAnswerer(Answerer):
    """POST {api_base}/chat/completions with each frame as a JPEG data URL after its timestamp label."""

    def __init__(self, api_base: str | None, api_model: str | None, *, api_key_env: str = "VQA_API_KEY",
                 timeout: float = 300.0, max_context_lines: int = 40):
        if not api_base or not api_model:
            raise ModelError("the openai answerer needs a server and a model name: --api-base URL (e.g. "
                             "http://localhost:8000/v1) and --api-model NAME")
        self.api_base, self._basic = split_userinfo(api_base.rstrip("/"))
        self.api_model = api_model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_context_lines = max_context_lines
        self.name = f"openai:{api_model}@{self.api_base}"
        self.fingerprint = hashlib.blake2b(self.name.encode(), digest_size=8).hexdigest()

    def answer(self, req: AnswerRequest) -> Answer:
        context = select_context(req.context, query_of(req), max_lines=self.max_context_lines)
        content: list[dict[str, Any]] = []
        shown: list[str] = []
        sizes: list[tuple[int, int]] = []
        for img, label, b in zip(req.frames, frame_labels(req), budgets_of(req), strict=False):
            img = fit_to_budget(img, b)
            content.append({"type": "text", "text": label})
            content.append({"type": "image_url", "image_url": {"url": jpeg_data_url(img)}})
            shown += [label, "<image>"]
            sizes.append(img.size)
        body = prompt_body(req, context)
        content.append({"type": "text", "text": body})
        payload = {"model": self.api_model, "messages": [{"role": "user", "content": content}],
                   "temperature": 0, "seed": req.seed, "max_tokens": req.max_new_tokens}
        reply = self._post("/chat/completions", payload)
        text, ntok = _completion_text(reply)
        return finish(req, text, prompt="\n".join([*shown, body]), context=context,
                      frames_seen=req.timestamps[:len(sizes)], frame_sizes=sizes, generated_tokens=ntok)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self._basic:
            headers["Authorization"] = "Basic " + base64.b64encode(self._basic.encode()).decode("ascii")
        secrets = [s for s in (key, self._basic, self._basic.partition(":")[2] if self._basic else None) if s]
        try:
            return self._send(path, payload, headers)
        except ModelError as e:
            raise ModelError(redact(e.message, secrets)) from None

    def _send(self, path: str, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        url = self.api_base + path
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(request, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                where = e.headers.get("Location", "?") if e.headers else "?"
                raise ModelError(f"{url}: HTTP {e.code}: the server redirects to {where}; redirects are not "
                                 "followed (credentials stay with --api-base): give the final address as "
                                 "--api-base") from None
            detail = e.read().decode("utf-8", "replace").strip()
            try:
                err = json.loads(detail).get("error", detail)
                detail = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            except (ValueError, AttributeError):
                pass
            raise ModelError(f"{url}: HTTP {e.code} {e.reason}: {detail[:500]}") from e
        except urllib.error.URLError as e:
            raise ModelError(f"cannot reach the answer server {url}: {e.reason} (is it running? check --api-base)"
                             ) from e
        except TimeoutError as e:
            raise ModelError(f"{url}: no reply within {self.timeout:.0f} s") from e
        except ValueError as e:
            raise ModelError(f"{url}: the reply is not JSON ({e})") from e


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as the HTTPError they are, never followed with our headers."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


def split_userinfo(url: str) -> tuple[str, str | None]:
    """(the URL without ``user:password@``, "user:password" or None)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), f"{unquote(user)}:{unquote(password)}"


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each secret (as given, URL-quoted and base64-encoded as Basic auth carries it)
    replaced by ``***``; longest first."""
    from urllib.parse import quote

    forms = set()
    for s in secrets:
        forms |= {s, quote(s, safe=""), quote(s), base64.b64encode(s.encode()).decode("ascii")}
    for form in sorted((f for f in forms if len(f) >= 3), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _completion_text(reply: dict[str, Any]) -> tuple[str, int]:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as e:
        raise ModelError(f"the answer server's reply has no choices[0].message.content: {str(reply)[:300]}") from e
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    ntok = int((reply.get("usage") or {}).get("completion_tokens") or 0)
    return content or "", ntok


def jpeg_data_url(image, quality: int = 90) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")



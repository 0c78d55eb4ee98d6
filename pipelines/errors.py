"""The errors the pipelines raise on purpose. The CLI maps each to one line and an exit code."""

from __future__ import annotations


class VqaError(Exception):
    """Base class: an error we expect and can explain in one line."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:  # "file.mp4: problem"
        return f"{self.path}: {self.message}" if self.path else self.message


class MediaError(VqaError):
    """The file is missing, not a video, truncated, or ffmpeg could not read it."""


class ModelError(VqaError):
    """A model could not be found or loaded; the message says how to provide it."""


class NotIndexedError(VqaError):
    """The video has not been indexed (and the command was told not to index it)."""


class UsageError(VqaError):
    """Bad arguments that typer could not catch; exit code 2."""

"""Expand what users pass to `vqa index`: files, folders (recursive, video extensions), globs, stdin; and
refuse, in words, what is not a local video (a URL, a still image) before any decoder sees it."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from typing import TextIO

from pipelines.errors import MediaError
from pipelines.stages.media import VIDEO_EXTENSIONS

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|[^/\\]*@)|^(https?|rtmps?|rtsp|srt|udp|tcp|ftp|sftp|file|data|"
                  r"concat|subfile|pipe|crypto|hls):", re.IGNORECASE)
# Still-image signatures, each with its name: every image format is refused the same way (decoders read a
# single picture as a 0.04 s "video", or fail to find a duration, depending on the format).
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
                (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x0a", "JPEG XL"),
                (b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
                (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"), (b"qoif", "QOI"))
_IMAGE_BRANDS = {b"avif": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"jxl ": "JPEG XL"}


def looks_like_url(path: str) -> bool:
    """``scheme://…``, ``user@host:…``-like or a known protocol prefix (``http:``, ``rtmp:``, ``concat:`` …)."""
    return bool(_URL.match(path))


def still_image_format(head: bytes) -> str | None:
    """The name of the still-image format these first bytes start, or None."""
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            if name == "GIF" and head.count(b"\x21\xf9\x04") > 1:
                return None  # an animated GIF is a (short) video
            if name == "BMP" and len(head) >= 14 and int.from_bytes(head[2:6], "little") < 26:
                return None
            return name
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return _IMAGE_BRANDS[head[8:12]]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None if b"ANIM" in head[12:64] else "WebP"
    return None


def check_input(path: str) -> None:
    """Refuse what is not a local video: a URL that is not a local file ("nothing is fetched because of a
    name"), and still images of any format. A local file whose name looks like a URL is a local file."""
    if not os.path.lexists(path):
        if looks_like_url(path):
            raise MediaError("a URL, not a local file: vqa indexes local files only (download it first)", path)
        return  # check_file says what is wrong
    if not os.path.isfile(path):
        return
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
            if head.startswith(b"GIF8"):  # animated or not: count its frames' control blocks
                head += f.read(64 << 20)
    except OSError:
        return  # check_file reports permission problems
    fmt = still_image_format(head)
    if fmt:
        raise MediaError(f"a still image ({fmt}), not a video: vqa indexes videos only", path)


def read_stdin_paths(stream: TextIO, nul: bool = False) -> list[str]:
    data = stream.read()
    parts = data.split("\0") if nul else data.splitlines()
    return [p for p in (x.strip("\r\n") if not nul else x for x in parts) if p]


def _walk(folder: str, pattern: str | None) -> Iterator[str]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if pattern:
                if glob.fnmatch.fnmatch(name, pattern):  # type: ignore[attr-defined]
                    yield full
            elif _looks_like_video(full):
                yield full


def _looks_like_video(path: str) -> bool:
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        return False
    if ext == ".ts":  # MPEG transport stream or TypeScript? A TS packet starts with the sync byte 0x47.
        if not os.path.isfile(path):  # a pipe would block the read: let indexing report what it is
            return True
        try:
            with open(path, "rb") as f:
                head = f.read(189)
        except OSError:
            return True
        return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47
    return True


def expand_inputs(items: Iterable[str], *, pattern: str | None = None) -> list[str]:
    """Files as given (even with a non-video extension: probing will say what they are), folders
    walked recursively for video extensions (or ``pattern``), globs expanded; order kept, duplicates
    dropped. Paths that exist nowhere are kept so that they are reported as missing."""
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in items:
        if os.path.isdir(item) and os.path.splitext(item)[1].lower() not in VIDEO_EXTENSIONS:
            for p in _walk(item, pattern):
                add(p)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                add(item)
            for p in matches:
                if os.path.isdir(p):
                    for q in _walk(p, pattern):
                        add(q)
                else:
                    add(p)
        else:
            add(item)
    return out

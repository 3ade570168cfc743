"""HTTP byte ranges (RFC 9110 §14) for the audio endpoint, so a browser's ``<audio>`` can seek.

:func:`parse_range` reads one ``Range: bytes=...`` header against a representation of ``size``
bytes and returns the inclusive ``(first, last)`` byte positions to send, or ``None`` to send the
whole body (no header, a unit other than bytes, a malformed header, or several ranges: the server
may ignore Range, and browsers only ever ask for one). A syntactically valid range that starts at
or past the end raises :class:`RangeNotSatisfiable` (416 with ``Content-Range: bytes */size``).

:func:`ranged_response` answers from a file on disk or from bytes in memory: 200 with the whole
body, or 206 with ``Content-Range`` and exactly the requested bytes, always with
``Accept-Ranges: bytes``, ``Content-Length``, and the given ``ETag``. ``If-Range`` with a
different validator falls back to the whole body. A HEAD request gets the headers only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from audiosim.service.errors import RangeNotSatisfiable

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
CHUNK = 64 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte positions of a single-range request, or None for the whole body."""
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _SPEC.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.groups()
    if not first_s:  # suffix: the last N bytes
        n = int(last_s)
        if n == 0:
            raise RangeNotSatisfiable("a zero-length suffix range selects no bytes", size=size)
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else None
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(f"range starts at byte {first} but the audio has {size} bytes", size=size)
    return first, size - 1 if last is None else min(last, size - 1)


def ranged_response(request, *, media_type: str, etag: str, path: Path | None = None, data: bytes | None = None,
                    extra_headers: dict[str, str] | None = None):
    """A 200 or 206 answer for ``path`` or ``data`` honouring the request's Range and If-Range headers."""
    from starlette.responses import Response, StreamingResponse

    if (path is None) == (data is None):
        raise ValueError("give exactly one of path= or data=")
    size = path.stat().st_size if path is not None else len(data)
    headers = {"Accept-Ranges": "bytes", "ETag": etag, **(extra_headers or {})}
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    span = parse_range(wanted, size) if (not if_range or if_range == etag) else None
    first, last = span if span is not None else (0, size - 1)
    length = max(0, last - first + 1)
    status = 206 if span is not None else 200
    headers["Content-Length"] = str(length)
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if data is not None:
        return Response(content=data[first:last + 1], status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(_file_chunks(path, first, length), status_code=status, headers=headers,
                             media_type=media_type)


def _file_chunks(path: Path, first: int, length: int):
    with open(path, "rb") as f:
        f.seek(first)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def file_etag(path: Path, content_sha256: str | None) -> str:
    """A strong validator: the indexed content hash plus the file's size and mtime (so an edited file changes it)."""
    st = os.stat(path)
    base = (content_sha256 or "nohash")[:16]
    return f'"{base}-{st.st_size:x}-{int(st.st_mtime_ns):x}"'

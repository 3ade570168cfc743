"""Who may call the API, how much they may upload, and which folders a write may touch.

* :func:`check_token`: when the server has a token, every ``/api`` and ``/metrics`` request must
  carry ``Authorization: Bearer TOKEN`` (or the ``audiosim_token`` cookie the page sets, since an
  ``<audio>`` or ``<img>`` element cannot send headers); compared in constant time. ``/``,
  ``/static`` and ``/healthz`` stay open: they reveal nothing about the collections.
* :class:`UploadLimitMiddleware`: a request body above ``max_bytes`` is refused with 413 before
  the multipart parser sees it, from ``Content-Length`` when given and by counting the streamed
  bytes otherwise.
* :class:`SameOriginPagesMiddleware`: the HTML pages (``/``, ``/docs``, ``/redoc``) carry a
  Content-Security-Policy that lets them load only from this server, so the browser makes no
  request to another host (ReDoc's "by Redocly" logo would come from a CDN).
* :func:`folder_under_root`: a folder an index job may read: it must resolve (symlinks followed)
  to ``root`` or a folder below it. Audio is never served by a client-given path at all: only by
  item id, from the path the collection recorded.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from audiosim.files import is_under
from audiosim.service.errors import Forbidden, PayloadTooLarge, Unauthorized, error_body

TOKEN_COOKIE = "audiosim_token"


def check_token(expected: str | None, authorization: str | None, cookie: str | None) -> None:
    """Raise :class:`Unauthorized` unless the request carries the server's token."""
    if expected is None:
        return
    given = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
    if given is None and cookie:
        given = cookie
    if given is None:
        raise Unauthorized("this server needs a token: send 'Authorization: Bearer TOKEN'")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("the token is not valid for this server")


def served_file_allowed(path: str, root: Path | None) -> None:
    """:class:`Forbidden` when ``path`` lies under ``root`` but is a symbolic link to a file outside it.

    An index job never reads such a file (it scans with ``within=root``); this keeps one indexed
    before (or by a local ``audiosim index``) from being served out of a write-enabled server's tree.
    """
    if root is None:
        return
    base = str(Path(root).resolve())
    if is_under(str(path), base) and not is_under(os.path.realpath(path), base):
        raise Forbidden(f"{Path(path).name} is a symbolic link to a file outside the folder this server may read "
                        "(--root); it is not served. Replace the link by the file itself")


def folder_under_root(folder: str, root: Path) -> Path:
    """``folder`` resolved, if it is ``root`` or below it and exists; else :class:`Forbidden`."""
    if not folder or "\x00" in folder:
        raise Forbidden("give the folder to index as a path under the server's --root")
    base = Path(root).resolve()
    candidate = Path(folder)
    if not candidate.is_absolute():
        candidate = base / candidate
    resolved = candidate.resolve()
    try:
        inside = os.path.commonpath([str(base), str(resolved)]) == str(base)
    except ValueError:
        inside = False
    if not inside:
        raise Forbidden(f"{folder!r} is outside the folder this server may index (--root); "
                        "give a path below it, relative to it or absolute")
    if not resolved.is_dir():
        raise Forbidden(f"{folder!r} is not an existing folder under --root")
    return resolved


class UploadLimitMiddleware:
    """413 for request bodies above ``max_mb`` MiB (declared or streamed)."""

    def __init__(self, app, *, max_mb: float) -> None:
        self.app, self.max_mb, self.max_bytes = app, max_mb, int(max_mb * 1024 * 1024)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        message = (f"the upload is larger than this server's limit of {self.max_mb:g} MB; send a shorter clip "
                   "or choose a time range (the server's --max-upload-mb sets the limit)")
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, message)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(message)
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge:
            if started:
                raise
            await _send_json(send, 413, message)


async def _send_json(send, status: int, message: str, code: str = "too_large") -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


SAME_ORIGIN_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                   "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self' data:; "
                   "worker-src 'self' blob:; connect-src 'self'")


class SameOriginPagesMiddleware:
    """Adds :data:`SAME_ORIGIN_CSP` to the answers of ``paths`` (a pure ASGI middleware: API requests pass untouched)."""

    def __init__(self, app, *, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", SAME_ORIGIN_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)

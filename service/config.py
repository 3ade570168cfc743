"""What ``audiosim serve`` was asked to do: :class:`ServeConfig`, checked before anything binds a port.

Rules checked by :meth:`ServeConfig.check` (each failure is a :class:`ServeConfigError` naming the fix):

* a host that is not a loopback address (``127.0.0.1``, ``::1``, ``localhost``) requires a token:
  the API is then only answered to requests carrying ``Authorization: Bearer TOKEN``;
* ``allow_write`` requires ``root``, an existing folder: index jobs may only read folders under it;
* collection names are unique and URL-safe (``[A-Za-z0-9._-]``, not starting with a dot);
* sizes are positive: ``max_upload_mb``, ``workers``, ``queue``, ``queue_wait_s``.

A collection is given as ``DIR`` (named after the folder) or ``NAME=DIR``. :func:`check_port` tells,
before the collections load, whether ``--host``/``--port`` can be listened on.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from audiosim.service.errors import ServeConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0, :: and every other address or name."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def parse_collection_arg(arg: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder) to ``(name, path)``."""
    name, sep, path = arg.partition("=")
    if not sep:
        name, path = "", arg
    p = Path(path).expanduser()
    name = name or p.resolve().name
    if not NAME_RE.match(name):
        raise ServeConfigError(
            f"collection name {name!r} is not URL-safe; name it explicitly with --collection NAME=DIR "
            "(letters, digits, '.', '_', '-')"
        )
    return name, p


@dataclass(frozen=True)
class ServeConfig:
    """Options of one server; ``collections`` maps URL names to collection folders."""

    collections: tuple[tuple[str, Path], ...]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 50.0
    allow_write: bool = False
    root: Path | None = None
    cors: tuple[str, ...] = ()
    workers: int = 2
    queue: int = 16
    queue_wait_s: float = 10.0
    retry_after_s: int = 1
    spectrogram_cache: int = 512
    segment_cache_mb: float = 64.0
    warm: bool = True

    @classmethod
    def from_args(cls, collections: tuple[str, ...] | list[str], **options) -> "ServeConfig":
        """Build from ``--collection`` strings and the other options, then :meth:`check`."""
        return cls(collections=tuple(parse_collection_arg(c) for c in collections), **options).check()

    def check(self) -> "ServeConfig":
        if not self.collections:
            raise ServeConfigError("give at least one --collection DIR (a folder made by `audiosim index`)")
        names = [n for n, _ in self.collections]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ServeConfigError(
                f"two collections are both named {', '.join(dupes)}; name them with --collection NAME=DIR"
            )
        for name in names:
            if not NAME_RE.match(name):
                raise ServeConfigError(f"collection name {name!r} is not URL-safe (letters, digits, '.', '_', '-')")
        if not is_loopback(self.host) and not self.token:
            raise ServeConfigError(
                f"--host {self.host} is reachable from other machines: pass --token SECRET (clients send "
                "'Authorization: Bearer SECRET'), or bind 127.0.0.1 and put a reverse proxy in front"
            )
        if self.token is not None and len(self.token) < 8:
            raise ServeConfigError("--token must be at least 8 characters; generate one with "
                                   "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
        if self.allow_write:
            if self.root is None:
                raise ServeConfigError("--allow-write needs --root DIR: index jobs may only read folders under it")
            if not Path(self.root).is_dir():
                raise ServeConfigError(f"--root {self.root} is not an existing folder")
        for what, value in (("--max-upload-mb", self.max_upload_mb), ("--workers", self.workers),
                            ("--queue-wait", self.queue_wait_s)):
            if not value > 0:
                raise ServeConfigError(f"{what} must be positive, got {value}")
        if self.queue < 0:
            raise ServeConfigError(f"--queue must be 0 or more, got {self.queue}")
        for origin in self.cors:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ServeConfigError(f"--cors {origin!r} is not an origin such as https://example.org (no path)")
        return self


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go; a :class:`ServeConfigError` naming ``--port``/``--host`` if that fails.

    Binds as uvicorn will (``SO_REUSEADDR``, so a port left in TIME_WAIT by a stopped server counts as free).
    A port taken in the moment between this check and uvicorn's own bind still fails there.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ServeConfigError(f"--host {host} is not an address or a name this machine resolves ({e}); "
                               "use 127.0.0.1 or one of this machine's addresses") from None
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeConfigError(f"port {port} on {host} is already in use (another audiosim serve, or another "
                                   "program): choose a free one with --port N, or stop the program using it") from None
        if e.errno == errno.EACCES:
            raise ServeConfigError(f"listening on port {port} needs administrator rights here; "
                                   "choose --port 1024 or above") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ServeConfigError(f"--host {host} is not an address of this machine; use 127.0.0.1 "
                                   "or one of its own addresses") from None
        raise ServeConfigError(f"cannot listen on {host} port {port} ({e.strerror or e}); "
                               "choose another --host or --port") from None

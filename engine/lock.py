"""The writer lock of a collection: one writer at a time, released by the kernel when its process dies.

An exclusive ``fcntl.flock`` on ``DIR/.lock``. The holder writes its PID, host and start time
into the file so a second writer can say who holds it. ``flock`` locks belong to the open file
and vanish when the process exits or is killed, so there are no stale locks to clean up. A
second writer polls for up to ``wait`` seconds and then raises :class:`CollectionLockedError`
naming the holder. Readers never take the lock: they read immutable parts named by a
manifest snapshot.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from audiosim.errors import CollectionLockedError

LOCK_FILE = ".lock"
DEFAULT_WAIT_S = 10.0
POLL_S = 0.05


class WriterLock:
    """Context manager holding ``DIR/.lock`` exclusively; re-entrant within one object."""

    def __init__(self, root: str | Path, *, wait: float | None = DEFAULT_WAIT_S, purpose: str = "write") -> None:
        self.root = Path(root)
        self.wait = DEFAULT_WAIT_S if wait is None else float(wait)
        self.purpose = purpose
        self._fd: int | None = None
        self._depth = 0

    @property
    def path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        import fcntl

        if self._fd is not None:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(self.wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _describe_holder(fd)
                    os.close(fd)
                    raise CollectionLockedError(
                        f"{self.root} is being written by another audiosim process ({holder}); waited {self.wait:g} s. "
                        "Wait for it to finish, or pass a longer --wait SECONDS"
                    ) from None
                time.sleep(POLL_S)
        stamp = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode(), 0)
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "holder unknown"
    return f"PID {info['pid']} on {info.get('host', '?')}, {info.get('purpose', 'write')} since {info.get('since', '?')}"

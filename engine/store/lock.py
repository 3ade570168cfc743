"""The writer lock of a collection: one writer at a time, released by the kernel when its process dies.

An exclusive ``fcntl.flock`` on ``DIR/.lock``. The holder writes its PID, host, purpose and
start time into the file so a second writer can say who holds it. ``flock`` locks belong to the
open file description and vanish when the process exits or is killed, so there are no stale
locks to clean up (the file itself stays; its stale text is overwritten by the next holder).
The descriptor is closed on ``exec`` (``os.open`` makes it non-inheritable), so a subprocess
the holder starts never keeps the lock; a child *forked* without ``exec`` (``multiprocessing``'s
``fork`` start method) shares the open file and keeps the lock held while it lives, so worker
pools of a writer use the ``spawn`` or ``forkserver`` start method.

A second writer polls every 50 ms for up to ``wait`` seconds (``0``: try once; ``inf``: wait as
long as it takes) and then raises :class:`CollectionLockedError` naming the holder's PID. A
folder where the lock file cannot be created or opened for writing (read-only, permissions) is
a :class:`CollectionError` naming the folder: changing a collection needs write access, reading
it does not. Readers never take the lock: they read immutable parts named by a manifest snapshot.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from audiosim.errors import CollectionError, CollectionLockedError, InvalidOptionError
from audiosim.values import finite_number

LOCK_FILE = ".lock"
DEFAULT_WAIT_S = 10.0
POLL_S = 0.05
HOLDER_READ_TRIES = 5  # the holder writes its stamp just after taking the lock


class WriterLock:
    """Context manager holding ``DIR/.lock`` exclusively; re-entrant within one object."""

    def __init__(self, root: str | Path, *, wait: float | None = DEFAULT_WAIT_S, purpose: str = "write") -> None:
        self.root = Path(root)
        self.wait = DEFAULT_WAIT_S if wait is None else _wait_seconds(wait)
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
        if self._fd is not None:
            self._depth += 1
            return
        fd = self._open()
        deadline = time.monotonic() + self.wait
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
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, stamp.encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the holder's name is missing
            pass
        self._fd, self._depth = fd, 1

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CollectionError(
                f"cannot open the writer lock {self.path} ({e.strerror or e}); changing a collection needs write "
                f"access to its folder {self.root} (searching it does not). Fix the permissions or use a writable copy"
            ) from None

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        try:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _wait_seconds(wait) -> float:
    """Seconds to wait: a number (inf: as long as it takes; below 0: try once); nan or text is an error."""
    try:
        return max(finite_number(wait, option="--wait", allow_inf=True), 0.0)
    except InvalidOptionError as e:
        raise CollectionError(str(e)) from None


def _describe_holder(fd: int) -> str:
    info: dict = {}
    for attempt in range(HOLDER_READ_TRIES):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("pid"):
            break
        time.sleep(POLL_S)
    if not isinstance(info, dict) or not info.get("pid"):
        return "holder unknown"
    return f"PID {info['pid']} on {info.get('host', '?')}, {info.get('purpose', 'write')} since {info.get('since', '?')}"

"""The bounded inference pool: model work never queues without limit.

:class:`InferencePool` runs blocking jobs (decode + embed + search of an uploaded clip) on
``workers`` threads. At most ``queue`` further jobs wait; when ``workers + queue`` jobs are
already admitted, :meth:`InferencePool.submit` raises :class:`Busy` at once (503 with
``Retry-After``). A job that waited longer than ``max_wait_s`` before a worker picked it up is
dropped with the same error instead of running late, so no request admitted to the pool
takes longer than ``max_wait_s`` plus its own run time. Cheap work (search by id or vector)
does not go through the pool.

Counters are guarded by a lock and released by the future's done-callback, so a client that
disconnects while its job waits or runs never leaks a slot.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

from audiosim.service.errors import Busy

T = TypeVar("T")


@dataclass(frozen=True)
class PoolStats:
    workers: int
    capacity: int
    admitted: int
    running: int
    rejected: int
    expired: int

    @property
    def queued(self) -> int:
        return max(0, self.admitted - self.running)


class InferencePool:
    """``workers`` threads, at most ``queue`` waiting jobs, each waiting at most ``max_wait_s``."""

    def __init__(self, *, workers: int, queue: int, max_wait_s: float, retry_after_s: int = 1) -> None:
        if workers < 1 or queue < 0 or max_wait_s <= 0:
            raise ValueError("workers >= 1, queue >= 0 and max_wait_s > 0 are required")
        self.workers, self.queue, self.max_wait_s, self.retry_after_s = workers, queue, max_wait_s, retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audiosim-infer")
        self._lock = threading.Lock()
        self._admitted = self._running = self._rejected = self._expired = 0

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self.workers, self.workers + self.queue, self._admitted, self._running,
                             self._rejected, self._expired)

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> "Future[tuple[T, float]]":
        """Admit a job or raise :class:`Busy`; the future's result is ``(fn's result, ms waited in the queue)``."""
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                self._rejected += 1
                raise Busy(f"the server is busy: {self._admitted} searches are running or queued "
                           f"(limit {self.workers + self.queue}); retry shortly", retry_after_s=self.retry_after_s)
            self._admitted += 1
        admitted_at = time.perf_counter()
        try:
            future = self._executor.submit(self._call, admitted_at, fn, args, kwargs)
        except RuntimeError:  # executor shut down
            self._release()
            raise Busy("the server is shutting down", retry_after_s=self.retry_after_s) from None
        future.add_done_callback(lambda _: self._release())
        return future

    def _call(self, admitted_at: float, fn, args, kwargs):
        waited_s = time.perf_counter() - admitted_at
        if waited_s > self.max_wait_s:
            with self._lock:
                self._expired += 1
            raise Busy(f"the search waited {waited_s:.1f} s for a worker, longer than the {self.max_wait_s:g} s "
                       "queue bound; retry shortly", retry_after_s=self.retry_after_s)
        with self._lock:
            self._running += 1
        try:
            return fn(*args, **kwargs), waited_s * 1000.0
        finally:
            with self._lock:
                self._running -= 1

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

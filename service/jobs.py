"""Background index jobs (``--allow-write``): a registry and a one-at-a-time runner.

:meth:`JobRegistry.start` records a :class:`Job` (``queued``) and runs it on a single background
thread, so jobs run one after another in submission order (each takes the collection's writer
lock anyway). A job moves ``queued -> running -> done | failed``; while it runs it may publish
``progress`` fields (files done, ...); ``done`` carries the ingest report, ``failed`` the error
message. The registry keeps the newest ``keep`` jobs. A job whose
function raises a non-audiosim exception is ``failed`` with the exception type in the message.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

from audiosim.errors import AudiosimError

STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    collection: str
    params: dict
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: dict = field(default_factory=dict)
    result: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["elapsed_s"] = (round((self.finished or time.time()) - self.started, 3) if self.started else None)
        return d


class JobRegistry:
    """Jobs by id; one worker thread runs them in order."""

    def __init__(self, *, keep: int = 100) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiosim-jobs")

    def start(self, *, kind: str, collection: str, params: dict, fn: Callable[[Callable[..., None]], dict]) -> Job:
        """Queue ``fn(report)``; ``fn`` may call ``report(**fields)`` to publish progress, and returns the result."""
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, collection=collection, params=dict(params))
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        self._executor.submit(self._run, job.id, fn)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def _update(self, job_id: str, **changes) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)

    def _report(self, job_id: str, **fields) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(job, progress={**job.progress, **fields})

    def _run(self, job_id: str, fn: Callable[[Callable[..., None]], dict]) -> None:
        self._update(job_id, state="running", started=time.time())
        try:
            result = fn(lambda **fields: self._report(job_id, **fields))
        except AudiosimError as e:
            self._update(job_id, state="failed", finished=time.time(), error=str(e))
        except Exception as e:  # a bug in ingest must not kill the job thread; it is reported on the job
            self._update(job_id, state="failed", finished=time.time(), error=f"{type(e).__name__}: {e}")
        else:
            self._update(job_id, state="done", finished=time.time(), result=result)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

"""The one ingest loop: reader (hash + decode) -> mapper (embed, pool or segment) -> sink (buffer, commit).

Every use that turns audio files into vectors or features runs through :func:`run_pipeline`:
``audiosim index`` (:func:`audiosim.engine.ingest.indexer.index_folder`), the ESC-50 benchmark cache,
the DCASE evaluation, the novelty benchmark (through the cache) and the VAE's log-mel
preparation. The stages are small callables:

* **reader** -- :func:`read_items` decodes files ahead of the consumer in a thread pool and
  yields :class:`Decoded` records: the item, the sha256 of exactly the bytes that were decoded
  (one read through a hashing reader: a file rewritten during the run is stored under the hash
  of the bytes its vectors came from), the mono float32 waveform at the pipeline's sample rate
  -- or, for a recording longer than :data:`STREAM_ABOVE_S`, a request to stream it in the
  mapper -- or the per-file error (a header beyond the limits is refused before any allocation).
* **mapper** -- any callable ``Decoded -> result``; :class:`audiosim.engine.ingest.mappers.EmbedMapper`
  embeds frames and pools them per file, per (overlapping) segment, or keeps every frame,
  producing :class:`Rows`.
* **sink** -- any callable ``(Mapped, result) -> None``; :class:`CollectionSink` buffers rows
  and commits a part every ``flush_every`` files and at every shard end (so an interrupted run
  keeps what it committed), :class:`ListSink` keeps results in memory.

Where reading and mapping run is a **stage**: a callable ``(items, *, sample_rate, nan_policy,
max_duration_s) -> Iterator[Mapped]`` that yields one :class:`Mapped` record per item:

* :class:`ThreadStage` (the default) -- reader threads decode ahead, the mapper runs in the
  calling thread. Decoding and inference overlap only as far as the decoder and the model
  release the GIL.
* :class:`ProcessStage` -- ``processes`` worker processes (fresh interpreters: safe whatever the
  parent has loaded) each build the mapper once from a picklable ``mapper_factory`` and then hash,
  decode and map the files they are given, so decoding and inference of different files run on
  all cores with no GIL between them. Results come back in input order (ids are assigned in the
  same order as with threads, and the vectors are the same). A worker that dies (a decoder crash
  on a hostile file, the kernel's OOM killer) costs only the file it was working on: that file is
  recorded as a ``WorkerDied`` failure, the files queued behind it go to a fresh worker and the
  run goes on. A worker that cannot build its mapper stops the run with the worker's error.
* ``audiosim.engine.ingest.ray_engine.RayStage`` -- an actor pool on a Ray cluster; it yields shards
  as they finish, the last file of each marked ``shard_end`` so the sink commits one part per shard.

A file that fails at any stage is recorded (:attr:`RunStats.failures`) and the run goes on;
``MemoryError`` is caught per file like any decoding error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from audiosim.engine.audio.decode import DEFAULT_MAX_DURATION_S, load_audio, open_audio
from audiosim.engine.audio.scan import FileItem
from audiosim.engine.store.store import Rows
from audiosim.errors import AudiosimError, InvalidOptionError, WorkerError

STREAM_ABOVE_S = 300.0  # longer files are decoded chunk by chunk while they are embedded
PROCESS_AHEAD = 4  # files queued per worker process beyond the one it works on
WORKER_START_S = 600.0  # a worker that has not loaded its mapper by then is reported stuck
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class Decoded:
    """A file after the reader: its waveform (or the error) and the sha256 of the bytes decoded.

    A file longer than :data:`STREAM_ABOVE_S` (by its header) is not decoded by the reader:
    ``audio`` is None and ``stream`` is set, and the mapper decodes it chunk by chunk while it
    embeds (:func:`audiosim.engine.audio.streaming.embed_file`), so memory stays bounded whatever the
    recording's length and however many files the reader holds ahead. :meth:`waveform` decodes
    such a file whole, for mappers that need all its samples at once.
    """

    item: FileItem
    sha256: str | None
    audio: np.ndarray | None
    sample_rate: int
    error: Exception | None = None
    stream: "StreamRequest | None" = None

    @property
    def duration_s(self) -> float:
        if self.audio is not None:
            return self.audio.size / self.sample_rate
        return self.stream.claimed_duration_s if self.stream is not None else 0.0

    def waveform(self) -> np.ndarray:
        """The whole waveform (decoding a streamed file now; its memory grows with the file)."""
        if self.audio is not None:
            return self.audio

        return load_audio(self.item.path, sample_rate=self.sample_rate, nan_policy=self.stream.nan_policy,
                          max_duration_s=self.stream.max_duration_s)


@dataclass(frozen=True)
class StreamRequest:
    """How the mapper should decode a long file it streams: the reader's NaN policy and duration limit."""

    nan_policy: str
    max_duration_s: float | None
    claimed_duration_s: float


@dataclass(frozen=True)
class Mapped:
    """A file after its stage: the mapper's result, or the failure record (as :func:`failure` writes it).

    ``shard_end``: the last file of a shard (stages that work in shards); the runner then asks
    the sink to commit what it holds (``sink.end_shard()``).
    """

    item: FileItem
    sha256: str | None
    duration_s: float
    result: object = None
    failure: dict | None = None
    shard_end: bool = False


@dataclass
class RunStats:
    """What a pipeline run did: files processed, failures, audio seconds, wall time."""

    processed: int = 0
    audio_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def failure(path: str, error: BaseException) -> dict:
    """The record of one failed file (as written to ``errors.jsonl``)."""
    kind = "MemoryError" if isinstance(error, MemoryError) else type(error).__name__
    message = str(error) or ("not enough memory to decode or embed this file" if isinstance(error, MemoryError) else kind)
    return {"path": path, "error": kind, "message": message}


# ---------------------------------------------------------------------- reader
def decode_item(item: FileItem, *, sample_rate: int, nan_policy: str = "error",
                max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Decoded:
    """Decode one file and hash exactly the bytes decoded (one read, :func:`audiosim.engine.audio.decode.open_audio`).

    The header is checked first (sample rate, channels, ``max_duration_s``: refused before any
    allocation); a file longer than :data:`STREAM_ABOVE_S` is left for the mapper to stream.
    """

    path = Path(item.path)
    try:
        with open_audio(path, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s) as stream:
            claimed = stream.info.duration_s
            if claimed is not None and claimed > STREAM_ABOVE_S:
                return Decoded(item=item, sha256=None, audio=None, sample_rate=sample_rate,
                               stream=StreamRequest(nan_policy=nan_policy, max_duration_s=max_duration_s,
                                                    claimed_duration_s=float(claimed)))
            audio = stream.read_all()
            return Decoded(item=item, sha256=stream.sha256, audio=audio, sample_rate=sample_rate)
    except AudiosimError as e:
        return Decoded(item=item, sha256=None, audio=None, sample_rate=sample_rate, error=e)
    except MemoryError as e:
        return Decoded(item=item, sha256=None, audio=None, sample_rate=sample_rate, error=e)
    except OSError as e:
        return Decoded(item=item, sha256=None, audio=None, sample_rate=sample_rate,
                       error=AudiosimError(f"cannot read {path}: {e.strerror or e}"))
    except Exception as e:  # a decoder bug must not stop the run; it is reported per file
        return Decoded(item=item, sha256=None, audio=None, sample_rate=sample_rate,
                       error=AudiosimError(f"{type(e).__name__} while decoding {path}: {e}"))


def read_items(items: Sequence[FileItem], *, sample_rate: int, nan_policy: str = "error", workers: int = 2,
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Iterator[Decoded]:
    """Yield a :class:`Decoded` per item, in order, decoding up to ``4 * workers`` files ahead."""
    def work(item: FileItem) -> Decoded:
        return decode_item(item, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s)

    if workers <= 1:
        for item in items:
            yield work(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = max(2, workers * 4)
        futures = [pool.submit(work, it) for it in items[:ahead]]
        for i in range(len(items)):
            if i + ahead < len(items):
                futures.append(pool.submit(work, items[i + ahead]))
            yield futures[i].result()
            futures[i] = None


def map_decoded(mapper: Callable[[Decoded], object], d: Decoded) -> Mapped:
    """Run ``mapper`` on one decoded file; a decoding error or an expected mapper error becomes the failure."""
    if d.error is not None:
        return Mapped(item=d.item, sha256=None, duration_s=0.0, failure=failure(d.item.path, d.error))
    try:
        result = mapper(d)
    except (AudiosimError, ValueError, MemoryError) as e:
        return Mapped(item=d.item, sha256=d.sha256, duration_s=d.duration_s, failure=failure(d.item.path, e))
    return Mapped(item=d.item, sha256=d.sha256, duration_s=d.duration_s, result=result)


# ---------------------------------------------------------------------- stages
BATCH_FILES = 64  # decoded files a batching mapper gets at once ...
BATCH_SECONDS = 600.0  # ... holding at most this much audio (bounds the memory of a group)


class ThreadStage:
    """Decode ahead in ``workers`` threads (``reader``); map in the calling thread.

    A mapper that batches (``mapper.batches`` true and a ``map_batch(list[Decoded])`` method, as
    :class:`audiosim.engine.ingest.mappers.EmbedMapper` with an embedder that runs the windows of
    several files in one forward pass) gets the decoded files in groups of up to ``batch_files``
    files and ``batch_seconds`` of audio, so a GPU sees full batches instead of a clip's few
    windows; files it cannot batch (errors, recordings streamed or longer than a chunk) are mapped
    one by one, and the results come out in input order either way.
    """

    def __init__(self, mapper: Callable[[Decoded], object], *, workers: int = 2,
                 reader: Callable[..., Iterable[Decoded]] = read_items, batch_files: int = BATCH_FILES,
                 batch_seconds: float = BATCH_SECONDS) -> None:
        self.mapper, self.workers, self.reader = mapper, int(workers), reader
        self.batch_files, self.batch_seconds = max(1, int(batch_files)), float(batch_seconds)

    def __call__(self, items: Sequence[FileItem], *, sample_rate: int, nan_policy: str = "error",
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Iterator[Mapped]:
        decoded = self.reader(items, sample_rate=sample_rate, nan_policy=nan_policy, workers=self.workers,
                              max_duration_s=max_duration_s)
        if self.batch_files > 1 and getattr(self.mapper, "batches", False):
            yield from self._batched(decoded)
            return
        for d in decoded:
            yield map_decoded(self.mapper, d)

    def _batched(self, decoded: Iterable[Decoded]) -> Iterator[Mapped]:
        group: list[Decoded] = []
        seconds = 0.0
        for d in decoded:
            if not self.mapper.batchable(d):
                yield from self._map_group(group)
                group, seconds = [], 0.0
                yield map_decoded(self.mapper, d)
                continue
            group.append(d)
            seconds += d.duration_s
            if len(group) >= self.batch_files or seconds >= self.batch_seconds:
                yield from self._map_group(group)
                group, seconds = [], 0.0
        yield from self._map_group(group)

    def _map_group(self, group: list[Decoded]) -> Iterator[Mapped]:
        if not group:
            return
        for d, result in zip(group, self.mapper.map_batch(group)):
            if isinstance(result, BaseException):
                yield Mapped(item=d.item, sha256=d.sha256, duration_s=d.duration_s, failure=failure(d.item.path, result))
            else:
                yield Mapped(item=d.item, sha256=d.sha256, duration_s=d.duration_s, result=result)


class ProcessStage:
    """``processes`` worker processes, each building its mapper once with ``mapper_factory()``; see the module docstring.

    ``mapper_factory`` must be picklable (a module-level class or function). ``threads``: the
    thread count each worker's numeric libraries are told to use (``OMP_NUM_THREADS`` & co.,
    set before the mapper is built); default: the usable cores divided by ``processes``.
    """

    def __init__(self, mapper_factory: Callable[[], Callable[[Decoded], object]], *, processes: int = 2,
                 ahead: int = PROCESS_AHEAD, threads: int | None = None) -> None:
        if int(processes) < 1:
            raise InvalidOptionError(f"a process stage needs at least 1 worker process, got {processes}")
        self.mapper_factory, self.processes, self.ahead = mapper_factory, int(processes), max(1, int(ahead))
        self.threads = threads if threads is not None else max(1, usable_cores() // self.processes)

    def __call__(self, items: Sequence[FileItem], *, sample_rate: int, nan_policy: str = "error",
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Iterator[Mapped]:
        if not items:
            return
        pool = _WorkerPool(self, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s)
        try:
            yield from pool.run(items)
        finally:
            pool.close()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Worker:
    """The parent's handle on one worker process: its connection and the sequence numbers it holds, in order.

    Workers are fresh interpreters (``python -c``), neither forked (a fork copies locks held by
    the parent's threads: TFLite, OpenMP, tqdm) nor started by ``multiprocessing`` (which re-runs
    the caller's ``__main__`` script in every worker). They talk over a socket pair wrapped in a
    :class:`multiprocessing.connection.Connection`; the first message is the parent's ``sys.path``,
    the second the mapper factory and the run's settings.
    """

    def __init__(self, stage: ProcessStage, sample_rate: int, nan_policy: str, max_duration_s: float | None) -> None:

        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        for var in THREAD_VARS:
            env.setdefault(var, str(stage.threads))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from audiosim.engine.ingest.pipeline import _worker_main; _worker_main()",
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.pending: deque[int] = deque()
        self.ready = False
        self.started = time.monotonic()
        try:
            self.conn.send([p for p in sys.path if p])
            self.conn.send((stage.mapper_factory, sample_rate, nan_policy, max_duration_s))
        except OSError:
            pass  # it died at once; the parent sees the closed connection and reports it


class _WorkerPool:
    """Hands files to workers (least loaded first), collects results, replaces workers that die."""

    def __init__(self, stage: ProcessStage, *, sample_rate: int, nan_policy: str, max_duration_s: float | None) -> None:
        self.stage, self.sample_rate, self.nan_policy, self.max_duration_s = stage, sample_rate, nan_policy, max_duration_s
        self.workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        w = _Worker(self.stage, self.sample_rate, self.nan_policy, self.max_duration_s)
        self.workers.append(w)
        return w

    def run(self, items: Sequence[FileItem]) -> Iterator[Mapped]:
        n = len(items)
        for _ in range(min(self.stage.processes, n)):
            self._spawn()
        retry: deque[int] = deque()
        done: dict[int, Mapped] = {}
        next_seq = emitted = 0
        while emitted < n:
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1
            if emitted >= n:
                break
            for w in sorted(self.workers, key=lambda w: len(w.pending)):
                while len(w.pending) <= self.stage.ahead and (retry or next_seq < n):
                    if retry:
                        seq = retry.popleft()
                    else:
                        seq, next_seq = next_seq, next_seq + 1
                    w.pending.append(seq)  # a send to a worker that just died is retried when it is buried
                    try:
                        w.conn.send((seq, items[seq]))
                    except OSError:
                        break
            by_conn = {w.conn: w for w in self.workers}
            for ready in wait(list(by_conn), timeout=WORKER_START_S):
                w = by_conn[ready]
                if not self._receive(w, done, items):
                    self._bury(w, done, retry, items)
            for w in self.workers:
                if not w.ready and time.monotonic() - w.started > WORKER_START_S:
                    raise WorkerError(f"a worker process has not loaded its model after {WORKER_START_S:.0f} s; "
                                        "check the embedder loads in a fresh Python process, or index with --processes 0")

    def _receive(self, w: _Worker, done: dict[int, Mapped], items: Sequence[FileItem]) -> bool:
        """Every message the worker has sent so far; False when its connection is closed (it died)."""
        while True:
            try:
                if not w.conn.poll():
                    return True
                msg = w.conn.recv()
            except (EOFError, OSError):
                return False
            kind = msg[0]
            if kind == "ready":
                w.ready = True
            elif kind == "done":
                seq, mapped = msg[1], msg[2]
                if w.pending and w.pending[0] == seq:
                    w.pending.popleft()
                done[seq] = mapped
            elif kind == "fatal":
                raise WorkerError(f"a worker process could not prepare its model: {msg[1]}; "
                                    "fix that, or index with --processes 0 (decode in threads, embed in this process)")
            else:  # "bug": an unexpected exception in the mapper, raised here as it would be in-process
                raise RuntimeError(f"worker process failed on {items[msg[1]].path}:\n{msg[2]}")

    def _bury(self, w: _Worker, done: dict[int, Mapped], retry: deque[int], items: Sequence[FileItem]) -> None:
        """A worker died: its current file fails, the files queued behind it are retried by a fresh worker."""
        try:
            code = w.proc.wait(timeout=10)
        except Exception:  # still alive with its connection closed: end it
            w.proc.kill()
            code = w.proc.wait()
        self.workers.remove(w)
        w.conn.close()
        if not w.ready:
            raise WorkerError(f"a worker process died while loading the model (exit code {code}); "
                                "index with --processes 0 to see the error in this process")
        if w.pending:
            seq = w.pending.popleft()
            path = items[seq].path
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            done[seq] = Mapped(item=items[seq], sha256=None, duration_s=0.0, failure={
                "path": path, "error": "WorkerDied",
                "message": f"the worker process decoding and embedding {path} died ({how}: a decoder crash or out "
                           "of memory); the file was skipped, the run went on"})
            retry.extend(sorted(w.pending))
        self._spawn()

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones (the consumer stopped early) are killed."""
        for w in self.workers:
            if w.pending:
                w.proc.kill()  # its results would be dropped anyway; nothing of it is committed
                continue
            try:
                w.conn.send(None)
            except OSError:
                w.proc.kill()
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # subprocess.TimeoutExpired: it did not exit when asked
                w.proc.kill()
                w.proc.wait()
            w.conn.close()
        self.workers = []


def _worker_main() -> None:
    """A worker process (``python -c``): build the mapper once, then hash, decode and map every file sent until ``None``."""

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    conn = Connection(int(sys.argv[1]))
    try:
        sys.path[:] = conn.recv()
        mapper_factory, sample_rate, nan_policy, max_duration_s = conn.recv()
        mapper = mapper_factory()
    except (EOFError, OSError):
        return
    except BaseException as e:  # reported to the parent, which stops the run with this message
        conn.send(("fatal", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        seq, item = msg
        try:
            mapped = map_decoded(mapper, decode_item(item, sample_rate=sample_rate, nan_policy=nan_policy,
                                                     max_duration_s=max_duration_s))
        except Exception:  # a bug: the parent raises it, as the same error would stop an in-process run
            conn.send(("bug", seq, traceback.format_exc()))
            continue
        conn.send(("done", seq, mapped))


# ---------------------------------------------------------------------- sinks
class CollectionSink:
    """Buffers rows and commits them every ``flush_every`` files (and at every shard end) through a writer.

    ``replacing`` maps a path to the ids of its previous vectors; they are dropped in the same
    commit that adds the new ones, so a changed file is never missing or doubled.
    """

    def __init__(self, writer, *, flush_every: int = 64, replacing: dict[str, Sequence[int]] | None = None) -> None:
        if int(flush_every) < 1:
            raise InvalidOptionError(f"flush_every must be at least 1 file per committed part, got {flush_every}")
        self.writer, self.flush_every = writer, int(flush_every)
        self.replacing = dict(replacing or {})
        self.vectors_added = 0
        self._rows: list[Rows] = []
        self._replace: list[int] = []
        self._files = 0

    def __call__(self, m: Mapped, rows: Rows) -> None:
        self._rows.append(rows)
        self._replace.extend(self.replacing.get(m.item.path, ()))
        self._files += 1
        if self._files >= self.flush_every:
            self.flush()

    def end_shard(self) -> None:
        self.flush()

    def flush(self) -> None:
        if self._rows:
            self.vectors_added += len(self.writer.append(Rows.concat(self._rows), replacing=self._replace))
        self._rows, self._replace, self._files = [], [], 0


class ListSink:
    """Keeps ``(item, result)`` pairs in memory, in the order the stage yields them."""

    def __init__(self) -> None:
        self.items: list[FileItem] = []
        self.results: list = []

    def __call__(self, m: Mapped, result) -> None:
        self.items.append(m.item)
        self.results.append(result)


# ---------------------------------------------------------------------- runner
def run_pipeline(items: Sequence[FileItem], *, sample_rate: int, sink: Callable[[Mapped, object], None],
                 mapper: Callable[[Decoded], object] | None = None, stage=None, workers: int = 2,
                 nan_policy: str = "error", max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
                 progress: bool = False, desc: str = "embedding", on_file: Callable[[FileItem], None] | None = None,
                 reader: Callable[..., Iterable[Decoded]] = read_items) -> RunStats:
    """Read, map and sink every item; failures are recorded per file and the run goes on.

    ``stage`` (see the module docstring) defaults to ``ThreadStage(mapper, workers=workers, reader=reader)``.
    """
    if stage is None:
        if mapper is None:
            raise InvalidOptionError("run_pipeline needs a mapper, or a stage that maps")
        stage = ThreadStage(mapper, workers=workers, reader=reader)
    t0 = time.perf_counter()
    stats = RunStats()
    bar = None
    if progress and items:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="file", desc=desc)
    end_shard = getattr(sink, "end_shard", None)
    outcomes = stage(items, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s)
    try:
        for m in outcomes:
            if m.failure is not None:
                stats.failures.append(m.failure)
            else:
                sink(m, m.result)
                stats.processed += 1
                stats.audio_seconds += m.duration_s
            if m.shard_end and end_shard is not None:
                end_shard()
            if bar is not None:
                bar.update(1)
            if on_file is not None:
                on_file(m.item)
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()  # stop worker processes or actors now, not when the generator is collected
        if bar is not None:
            bar.close()
        stats.seconds = time.perf_counter() - t0
    return stats

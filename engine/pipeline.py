"""The one ingest loop: reader (hash + decode ahead) -> mapper (embed, pool or segment) -> sink (buffer, commit).

Every use that turns audio files into vectors or features runs through :func:`run_pipeline`:
``audiosim index`` (:func:`audiosim.engine.ingest.index_folder`), the ESC-50 benchmark cache,
the DCASE evaluation, the novelty benchmark (through the cache) and the VAE's log-mel
preparation. The stages are small callables:

* **reader** -- :func:`read_items` decodes files ahead of the consumer in a thread pool and
  yields :class:`Decoded` records: the item, the sha256 of exactly the bytes that were decoded
  (a file rewritten while it is read is detected and read again, so a vector is never stored
  under the hash of other bytes), the mono float32 waveform at the pipeline's sample rate, or
  the per-file error.
* **mapper** -- any callable ``Decoded -> result``; :class:`EmbedMapper` embeds frames and pools
  them per file, per (overlapping) segment, or keeps every frame, producing :class:`Rows`.
* **sink** -- any callable ``(Decoded, result) -> None``; :class:`CollectionSink` buffers rows
  and commits a part every ``flush_every`` files (so an interrupted run keeps what it
  committed), :class:`ListSink` keeps results in memory.

A file that fails at any stage is recorded (:attr:`RunStats.failures`) and the run goes on;
``MemoryError`` is caught per file like any decoding error.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from audiosim.engine.pooling import PoolingSpec
from audiosim.engine.store import Rows
from audiosim.errors import AudiosimError

HASH_RETRIES = 3


@dataclass(frozen=True)
class FileItem:
    """One recording to ingest, with its optional label."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A file after the reader: its waveform (or the error) and the sha256 of the bytes decoded."""

    item: FileItem
    sha256: str | None
    audio: np.ndarray | None
    sample_rate: int
    error: Exception | None = None

    @property
    def duration_s(self) -> float:
        return 0.0 if self.audio is None else self.audio.size / self.sample_rate


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
def decode_item(item: FileItem, *, sample_rate: int, nan_policy: str = "error") -> Decoded:
    """Hash and decode one file; the hash is of the bytes decoded (the file is re-read if it changed meanwhile)."""
    from audiosim.engine.audio import load_audio
    from audiosim.files import sha256_file

    path = Path(item.path)
    try:
        for _ in range(HASH_RETRIES):
            before = _stat(path)
            sha = sha256_file(path)
            audio = load_audio(path, sample_rate=sample_rate, nan_policy=nan_policy)
            if _stat(path) == before:
                return Decoded(item=item, sha256=sha, audio=audio, sample_rate=sample_rate)
        raise AudiosimError(f"{path} kept changing while it was read ({HASH_RETRIES} tries); index it again once it is written")
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


def _stat(path: Path) -> tuple:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def read_items(items: Sequence[FileItem], *, sample_rate: int, nan_policy: str = "error",
               workers: int = 2) -> Iterator[Decoded]:
    """Yield a :class:`Decoded` per item, in order, decoding up to ``4 * workers`` files ahead."""
    def work(item: FileItem) -> Decoded:
        return decode_item(item, sample_rate=sample_rate, nan_policy=nan_policy)

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


# ---------------------------------------------------------------------- mapper
def segment_spans(duration_s: float, *, segment_s: float, hop_s: float | None = None) -> list[tuple[float, float]]:
    """``(start_s, duration_s)`` of every segment of a recording: length ``segment_s``, starting every ``hop_s``.

    Segments start at 0, hop, 2 hop, ... while the start lies inside the recording; the last
    ones are cut at the end. ``hop_s`` defaults to ``segment_s`` (no overlap).
    """
    hop = segment_s if hop_s is None else hop_s
    if not (segment_s > 0 and 0 < hop <= segment_s):
        raise AudiosimError(f"segments need 0 < hop ({hop}) <= segment length ({segment_s})")
    n = max(1, int(np.ceil(max(duration_s, 1e-12) / hop - 1e-9)))
    starts = np.arange(n) * hop
    return [(float(s), float(min(segment_s, max(duration_s - s, 0.0)))) for s in starts]


def segment_frames(frames: np.ndarray, times: np.ndarray, *, segment_s: float | None, duration_s: float,
                   pooling: PoolingSpec, segment_hop_s: float | None = None) -> list[tuple[float, float, np.ndarray]]:
    """Pool frames into one vector per clip, or per segment: ``(offset_s, duration_s, vector)``.

    A frame belongs to a segment when its start time lies in ``[start, start + segment_s)``;
    segments that hold no frame start (shorter than the embedder's hop) are skipped.
    """
    if not segment_s:
        return [(0.0, duration_s, pooling(frames))]
    out = []
    t = np.asarray(times, dtype=np.float64)
    for start, dur in segment_spans(duration_s, segment_s=segment_s, hop_s=segment_hop_s):
        sel = (t >= start - 1e-9) & (t < start + segment_s - 1e-9)
        if sel.any():
            out.append((start, dur, pooling(frames[sel])))
    if not out:  # a recording shorter than one embedder hop: its single frame is one segment
        out.append((0.0, duration_s, pooling(frames)))
    return out


class EmbedMapper:
    """``Decoded -> Rows``: embed frames, then pool per file, per segment, or keep every frame.

    ``frames=True`` stores one row per model window (offset = window start, duration = the
    window, cut at the end of the recording); otherwise :func:`segment_frames` decides.
    """

    def __init__(self, embedder, pooling: PoolingSpec, *, segment_s: float | None = None,
                 segment_hop_s: float | None = None, frames: bool = False) -> None:
        self.embedder, self.pooling = embedder, pooling
        self.segment_s, self.segment_hop_s, self.frames = segment_s, segment_hop_s, frames

    def __call__(self, d: Decoded) -> Rows:
        info = self.embedder.info
        frames, times = self.embedder.embed_frames(d.audio)
        duration = d.duration_s
        if self.frames:
            t = np.asarray(times, dtype=np.float64)
            return Rows(path=[d.item.path] * len(t), content_sha256=[d.sha256] * len(t), offset_s=t,
                        duration_s=np.clip(duration - t, 1e-9, info.window_s), label=[d.item.label] * len(t),
                        embedding=np.asarray(frames, dtype=np.float32))
        pooled = segment_frames(frames, times, segment_s=self.segment_s, segment_hop_s=self.segment_hop_s,
                                duration_s=duration, pooling=self.pooling)
        n = len(pooled)
        return Rows(path=[d.item.path] * n, content_sha256=[d.sha256] * n,
                    offset_s=np.array([p[0] for p in pooled], dtype=np.float64),
                    duration_s=np.array([p[1] for p in pooled], dtype=np.float64),
                    label=[d.item.label] * n, embedding=np.stack([p[2] for p in pooled]).astype(np.float32))


# ---------------------------------------------------------------------- sinks
class CollectionSink:
    """Buffers rows and commits them every ``flush_every`` files through a :class:`CollectionWriter`.

    ``replacing`` maps a path to the ids of its previous vectors; they are dropped in the same
    commit that adds the new ones, so a changed file is never missing or doubled.
    """

    def __init__(self, writer, *, flush_every: int = 64, replacing: dict[str, Sequence[int]] | None = None) -> None:
        if int(flush_every) < 1:
            raise AudiosimError(f"flush_every must be at least 1 file per committed part, got {flush_every}")
        self.writer, self.flush_every = writer, int(flush_every)
        self.replacing = dict(replacing or {})
        self.vectors_added = 0
        self._rows: list[Rows] = []
        self._replace: list[int] = []
        self._files = 0

    def __call__(self, d: Decoded, rows: Rows) -> None:
        self._rows.append(rows)
        self._replace.extend(self.replacing.get(d.item.path, ()))
        self._files += 1
        if self._files >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.vectors_added += len(self.writer.append(Rows.concat(self._rows), replacing=self._replace))
        self._rows, self._replace, self._files = [], [], 0


class ListSink:
    """Keeps ``(Decoded item, result)`` pairs in memory, in input order."""

    def __init__(self) -> None:
        self.items: list[FileItem] = []
        self.results: list = []

    def __call__(self, d: Decoded, result) -> None:
        self.items.append(d.item)
        self.results.append(result)


# ---------------------------------------------------------------------- runner
def run_pipeline(items: Sequence[FileItem], *, sample_rate: int, mapper: Callable[[Decoded], object],
                 sink: Callable[[Decoded, object], None], workers: int = 2, nan_policy: str = "error",
                 progress: bool = False, desc: str = "embedding",
                 on_file: Callable[[FileItem], None] | None = None,
                 reader: Callable[..., Iterable[Decoded]] = read_items) -> RunStats:
    """Read, map and sink every item; failures are recorded per file and the run goes on."""
    t0 = time.perf_counter()
    stats = RunStats()
    bar = None
    if progress and items:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="file", desc=desc)
    try:
        for d in reader(items, sample_rate=sample_rate, nan_policy=nan_policy, workers=workers):
            if d.error is not None:
                stats.failures.append(failure(d.item.path, d.error))
            else:
                try:
                    result = mapper(d)
                except (AudiosimError, ValueError, MemoryError) as e:
                    stats.failures.append(failure(d.item.path, e))
                else:
                    sink(d, result)
                    stats.processed += 1
                    stats.audio_seconds += d.duration_s
            if bar is not None:
                bar.update(1)
            if on_file is not None:
                on_file(d.item)
    finally:
        if bar is not None:
            bar.close()
        stats.seconds = time.perf_counter() - t0
    return stats

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
* **mapper** -- any callable ``Decoded -> result``; :class:`audiosim.engine.mappers.EmbedMapper`
  embeds frames and pools them per file, per (overlapping) segment, or keeps every frame,
  producing :class:`Rows`.
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

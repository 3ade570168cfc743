"""Inputs of the GLU-ConvVAE: log-mel windows at 16 kHz, their normalisation, a disk cache, sampling.

Torch-free (numpy only): the trainer turns the arrays made here into tensors.

* :class:`MelConfig` -- the spectrogram (25 ms STFT window, 10 ms hop, ``n_mels`` bands,
  125-7500 Hz) and the window the model sees (``frames`` STFT frames, ``hop_frames`` apart).
* :func:`log_mel` -- ``[n_stft_frames, n_mels]`` natural-log mel energies of a waveform, padded
  like the ``logmel`` embedder so that a short clip gives one whole window and no tail is dropped.
* :func:`windows` -- the ``[T, n_mels, frames]`` windows of a log-mel, one per hop.
* :class:`Normalizer` -- per-band mean/std fitted on training clips; stored in the checkpoint.
* :func:`load_logmels` -- decode and transform many files once, cached on disk (``.npy``), so
  training epochs cost no decoding.
* :class:`WindowSampler` -- epoch batches: random crops (augmentation) or every fixed window.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from audiosim.engine.audio.melspec import LOG_OFFSET, N_FFT, STFT_HOP, STFT_WIN
from audiosim.engine.audio.scan import scan_folder
from audiosim.engine.ingest.pipeline import FileItem, ListSink, run_pipeline
from audiosim.engine.models.vae.features import (  # noqa: F401
    SILENT_MARGIN,
    MelConfig,
    Normalizer,
    log_mel,
    mel_basis,
    n_windows,
    silent_frames,
    windows,
)
from audiosim.engine.models.weights import cache_dir
from audiosim.engine.store.store import CollectionStore

CACHE_FORMAT = 1
from audiosim.errors import DatasetError
from audiosim.files import atomic_path, write_json_atomic

# ---------------------------------------------------------------------------------------------
# Which files to train on


def paths_from_folder(folder: str | Path) -> list[str]:
    items = scan_folder(folder, label_from="none").items
    if not items:
        raise DatasetError(f"no audio files under {folder}")
    return [it.path for it in items]


def paths_from_collection(collection_dir: str | Path) -> list[str]:
    """The distinct file paths a collection was built from (in id order)."""

    coll = CollectionStore.open(collection_dir)
    seen: dict[str, None] = {}
    for r in coll.records(("path",)):
        seen.setdefault(r["path"], None)
    missing = [p for p in seen if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} files of collection {collection_dir} are gone (first: {missing[0]}); "
                           "re-index it or train from a folder")
    if not seen:
        raise DatasetError(f"collection {collection_dir} holds no files")
    return list(seen)


# ---------------------------------------------------------------------------------------------
# Decoding once, cached


@dataclass(frozen=True)
class LogMelSet:
    """Log-mels of many files: ``logmels[i]`` is ``[n_frames_i, n_mels]`` for ``paths[i]``."""

    paths: tuple[str, ...]
    logmels: tuple[np.ndarray, ...]
    failures: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Sequence[int]) -> "LogMelSet":
        return LogMelSet(paths=tuple(self.paths[i] for i in idx), logmels=tuple(self.logmels[i] for i in idx))


def cache_key(paths: Sequence[str], cfg: MelConfig) -> str:
    """Identifies the inputs: mel front end (not the window) and every file's path, size and mtime."""
    h = hashlib.sha256()
    front = {k: v for k, v in cfg.to_dict().items() if k not in ("frames", "hop_frames")}
    h.update(json.dumps({"format": CACHE_FORMAT, "front": front, "win": STFT_WIN, "hop": STFT_HOP, "nfft": N_FFT,
                         "frames": cfg.frames, "hop_frames": cfg.hop_frames}, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def default_cache_root() -> Path:
    return cache_dir() / "vae_logmel"


def load_logmels(paths: Sequence[str], cfg: MelConfig, *, cache: str | Path | None = None, workers: int = 2,
                 progress: bool = True) -> LogMelSet:
    """Log-mels of ``paths``, read from ``cache/<key>/`` when present, else computed and saved there.

    ``cache=None`` computes without caching. Files that cannot be decoded are skipped and listed
    in ``failures``; no file decodable raises :class:`DatasetError`.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise DatasetError("no audio files to train on")
    target = None
    if cache is not None:
        target = Path(cache) / cache_key(paths, cfg)
        if (target / "meta.json").is_file():
            return _read_cache(target)
    result = _compute(paths, cfg, workers=workers, progress=progress)
    if target is not None:
        _write_cache(target, result)
    return result


def _compute(paths: list[str], cfg: MelConfig, *, workers: int, progress: bool) -> LogMelSet:
    """Decode and transform every file through the ingest pipeline (NaN samples become zeros)."""

    basis = mel_basis(cfg)
    sink = ListSink()
    stats = run_pipeline([FileItem(path=p) for p in paths], sample_rate=cfg.sample_rate,
                         mapper=lambda d: log_mel(d.waveform(), cfg, basis), sink=sink, workers=max(1, workers),
                         nan_policy="zero", progress=progress, desc="log-mel")
    failures = [(f["path"], f["message"]) for f in stats.failures]
    if not sink.results:
        raise DatasetError(f"none of the {len(paths)} files could be decoded (first error: {failures[0][1]})")
    return LogMelSet(paths=tuple(it.path for it in sink.items), logmels=tuple(sink.results), failures=tuple(failures))


def _write_cache(target: Path, s: LogMelSet) -> None:
    target.mkdir(parents=True, exist_ok=True)
    lengths = np.array([m.shape[0] for m in s.logmels], dtype=np.int64)
    with atomic_path(target / "logmel.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate(s.logmels).astype(np.float16))
    with atomic_path(target / "lengths.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, lengths)
    meta = {"format": CACHE_FORMAT, "paths": list(s.paths), "failures": [list(f) for f in s.failures]}
    write_json_atomic(target / "meta.json", meta)  # written last: marks the cache complete


def _read_cache(target: Path) -> LogMelSet:
    meta = json.loads((target / "meta.json").read_text())
    flat = np.load(target / "logmel.npy").astype(np.float32)
    lengths = np.load(target / "lengths.npy")
    splits = np.split(flat, np.cumsum(lengths)[:-1])
    return LogMelSet(paths=tuple(meta["paths"]), logmels=tuple(splits),
                     failures=tuple(tuple(f) for f in meta.get("failures", [])))


# ---------------------------------------------------------------------------------------------
# Sampling windows for training


def window_index(logmels: Sequence[np.ndarray], cfg: MelConfig) -> np.ndarray:
    """[(clip, start_frame)] of every fixed window (hop ``hop_frames``) that is not pure digital silence."""
    out = []
    for i, lm in enumerate(logmels):
        silent = silent_frames(lm)
        for t in range(n_windows(lm.shape[0], cfg)):
            s = t * cfg.hop_frames
            if not silent[s:s + cfg.frames].all():
                out.append((i, s))
        if not any(o[0] == i for o in out[-1:]):  # a fully silent clip keeps its first window
            out.append((i, 0))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def crop_ranges(logmels: Sequence[np.ndarray], cfg: MelConfig) -> np.ndarray:
    """[(first, last)] admissible random-crop start frames per clip: the crop touches non-silent audio."""
    out = np.zeros((len(logmels), 2), dtype=np.int64)
    for i, lm in enumerate(logmels):
        last = max(lm.shape[0] - cfg.frames, 0)
        active = np.flatnonzero(~silent_frames(lm))
        if active.size:
            lo = int(np.clip(active[0] - cfg.frames + 1, 0, last))
            hi = int(np.clip(active[-1], lo, last))
        else:
            lo, hi = 0, last
        out[i] = (lo, hi)
    return out


@dataclass(frozen=True)
class WindowSampler:
    """Yields normalised batches ``[B, 1, n_mels, frames]`` float32.

    ``random_crop=True``: each epoch takes ``crops_per_clip`` windows per clip at uniformly drawn
    start frames (among those touching non-silent audio). ``False``: every fixed, non-silent
    window of every clip. Order and crops come from ``rng``: a seed fixes the run.
    """

    logmels: tuple[np.ndarray, ...]
    cfg: MelConfig
    norm: Normalizer
    random_crop: bool = True
    crops_per_clip: int = 1

    def epoch_index(self, rng: np.random.Generator) -> np.ndarray:
        if self.random_crop:
            ranges = crop_ranges(self.logmels, self.cfg)
            clip = np.repeat(np.arange(len(self.logmels)), self.crops_per_clip)
            lo, hi = ranges[clip, 0], ranges[clip, 1]
            start = lo + np.floor(rng.random(clip.size) * (hi - lo + 1)).astype(np.int64)
            idx = np.stack([clip, start], axis=1)
        else:
            idx = window_index(self.logmels, self.cfg)
        return idx[rng.permutation(len(idx))]

    def batch(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), 1, self.cfg.n_mels, self.cfg.frames), dtype=np.float32)
        for j, (i, s) in enumerate(idx):
            lm = self.logmels[i]
            w = lm[s:s + self.cfg.frames]
            if w.shape[0] < self.cfg.frames:
                w = np.pad(w, ((0, self.cfg.frames - w.shape[0]), (0, 0)), constant_values=np.log(LOG_OFFSET))
            out[j, 0] = w.T
        return self.norm(out[:, 0])[:, None]

    def batches(self, idx: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        for b in range(0, len(idx), batch_size):
            yield self.batch(idx[b:b + batch_size])

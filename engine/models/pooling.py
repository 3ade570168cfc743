"""Pool frame embeddings [T, D] into one vector per clip.

Pooling names (combine any of them with ``+``, e.g. ``mu+sigma+delta``, concatenated in order):

* ``mu``         -- mean of the frames over time.
* ``sigma``      -- standard deviation of the frames over time.
* ``delta``      -- Savitzky-Golay first derivative over time (``scipy.signal.savgol_filter``),
  reduced over frames (``delta_reduce``: ``absmean`` mean |d|, ``mean``, or ``std``); the window
  shrinks to fit short clips and a single frame gives zeros.
* ``l2mean``     -- mean of the L2-normalised frames.
* ``max``        -- element-wise maximum over time.
* ``delta_feat`` -- Savitzky-Golay derivative of ``mu`` across the feature axis (what
  ``librosa.feature.delta`` computes with its default axis); the reading of the seed thesis's
  delta that reproduces its "delta is about mu" results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiosim.errors import PoolingError

POOLINGS = ("mu", "sigma", "delta", "l2mean", "max", "delta_feat")
DELTA_REDUCTIONS = ("absmean", "mean", "std")
# The seven mu/sigma/delta combinations swept by the thesis's appendix B.
MU_SIGMA_DELTA_SWEEP = ("mu", "sigma", "delta", "mu+sigma", "mu+delta", "sigma+delta", "mu+sigma+delta")


@dataclass(frozen=True)
class PoolingSpec:
    """A parsed pooling: component names plus Savitzky-Golay options.

    ``skip_silence``: pool only the frames that are not the embedder's digital-silence frame
    (the frame of an all-zero window: the padding of short clips, gaps in long recordings); see
    :class:`audiosim.engine.ingest.mappers.FramePooler`. ``parse`` defaults to False (plain
    pooling); new collections default to True (``audiosim.engine.ingest.indexer.DEFAULT_SKIP_SILENCE``),
    and a manifest written before the field existed reads back as False (silence kept).
    """

    parts: tuple[str, ...]
    sg_window: int = 9
    sg_order: int = 2
    delta_reduce: str = "absmean"
    skip_silence: bool = False

    @classmethod
    def parse(cls, text: str, *, sg_window: int = 9, sg_order: int = 2, delta_reduce: str = "absmean",
              skip_silence: bool = False) -> "PoolingSpec":
        if not isinstance(text, str) or not text.strip():
            raise PoolingError("empty pooling; use e.g. 'mu' or 'mu+sigma+delta'")
        parts = tuple(p.strip() for p in text.split("+"))
        if not all(parts):
            raise PoolingError(f"pooling {text!r} has an empty part; join names with single '+', e.g. 'mu+sigma'")
        unknown = [p for p in parts if p not in POOLINGS]
        if unknown:
            raise PoolingError(f"unknown pooling {unknown}; choose from {', '.join(POOLINGS)} joined by '+'")
        if delta_reduce not in DELTA_REDUCTIONS:
            raise PoolingError(f"delta_reduce must be one of {DELTA_REDUCTIONS}, got {delta_reduce!r}")
        if sg_window < 3 or sg_window % 2 == 0 or sg_order < 1 or sg_order >= sg_window:
            raise PoolingError(f"Savitzky-Golay window must be odd >= 3 and above the order (got {sg_window}/{sg_order})")
        return cls(parts=parts, sg_window=sg_window, sg_order=sg_order, delta_reduce=delta_reduce,
                   skip_silence=bool(skip_silence))

    @property
    def name(self) -> str:
        return "+".join(self.parts)

    def describe(self) -> str:
        """The name, and whether silent frames are left out (for messages)."""
        return self.name + (" skipping digital silence" if self.skip_silence else "")

    def to_dict(self) -> dict:
        # recorded either way: a manifest without the field was made before silence was left out by
        # default, and reads back as "kept" (from_dict), so existing collections keep their vectors' meaning
        return {"name": self.name, "sg_window": self.sg_window, "sg_order": self.sg_order,
                "delta_reduce": self.delta_reduce, "skip_silence": self.skip_silence}

    @classmethod
    def from_dict(cls, d: dict) -> "PoolingSpec":
        return cls.parse(d["name"], sg_window=d.get("sg_window", 9), sg_order=d.get("sg_order", 2),
                         delta_reduce=d.get("delta_reduce", "absmean"), skip_silence=bool(d.get("skip_silence", False)))

    def dim(self, frame_dim: int) -> int:
        return frame_dim * len(self.parts)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return pool(frames, self)


def savgol_delta(x: np.ndarray, *, window: int, order: int, axis: int) -> np.ndarray:
    """First Savitzky-Golay derivative along ``axis``; the window shrinks (odd, > order) to fit.

    Fewer than three samples along ``axis``: the plain finite difference (two samples) or
    zeros (one sample).
    """
    n = x.shape[axis]
    if n < 3:
        if n == 2:
            return np.gradient(x, axis=axis).astype(np.float32)
        return np.zeros_like(x, dtype=np.float32)
    from scipy.signal import savgol_filter

    w = min(window, n if n % 2 else n - 1)
    o = min(order, w - 1)
    return savgol_filter(x, window_length=w, polyorder=o, deriv=1, axis=axis, mode="interp").astype(np.float32)


def _component(frames: np.ndarray, part: str, spec: PoolingSpec) -> np.ndarray:
    if part == "mu":
        return frames.mean(axis=0)
    if part == "sigma":
        return frames.std(axis=0)
    if part == "max":
        return frames.max(axis=0)
    if part == "l2mean":
        norms = np.linalg.norm(frames, axis=1, keepdims=True)
        return (frames / np.maximum(norms, 1e-12)).mean(axis=0)
    if part == "delta":
        d = savgol_delta(frames, window=spec.sg_window, order=spec.sg_order, axis=0)
        if spec.delta_reduce == "absmean":
            return np.abs(d).mean(axis=0)
        return d.mean(axis=0) if spec.delta_reduce == "mean" else d.std(axis=0)
    if part == "delta_feat":
        return savgol_delta(frames.mean(axis=0), window=spec.sg_window, order=spec.sg_order, axis=0)
    raise PoolingError(f"unknown pooling component {part!r}")


def pool(frames: np.ndarray, spec: PoolingSpec | str) -> np.ndarray:
    """One float32 vector from frames [T, D] (T >= 1)."""
    if isinstance(spec, str):
        spec = PoolingSpec.parse(spec)
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 1:
        raise PoolingError(f"pooling needs frames shaped [T>=1, D], got {f.shape}")
    return np.concatenate([_component(f, p, spec) for p in spec.parts]).astype(np.float32)

"""Checks and padding every model input goes through: mono, finite float32, long enough."""

from __future__ import annotations

import numpy as np


def check_waveform(waveform: np.ndarray) -> np.ndarray:
    """Validate an embedder input: 1-D, finite float32 (an empty input becomes one zero sample)."""
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"embedders take mono 1-D waveforms, got shape {x.shape}")
    if x.size == 0:
        x = np.zeros(1, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN/infinite samples; load it with audiosim.engine.audio.decode.load_audio")
    return x


def pad_to_min_length(x: np.ndarray, min_len: int) -> np.ndarray:
    """Zero-pad at the end so that ``len(x) >= min_len``."""
    if x.size >= min_len:
        return x
    return np.pad(x, (0, min_len - x.size))

"""Refine an excerpt's offset in a recording beyond the segment grid: energy envelopes cross-correlated.

The votes of :mod:`audiosim.engine.search.locate` place an excerpt to within a fraction of the
segment hop. :func:`refine_offset` reads the stretch of the matched recording around that offset
and slides the excerpt's RMS envelope (``ENVELOPE_HOP_S`` = 10 ms blocks) over the recording's,
``search_s`` either way; the lag with the highest normalised correlation is the refined offset.
An envelope is unchanged by a gain change (scale), barely moved by an added noise floor (a constant,
removed with the mean), a lossy re-encode or resampling, and is cheap. When the recording cannot
be read (moved, changed) or the correlation is weak (below ``MIN_CORRELATION``) the vote's offset
stands: refinement never makes a location worse than the vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import read_span, resample, to_mono_float

ENVELOPE_HOP_S = 0.01
MIN_CORRELATION = 0.5


@dataclass(frozen=True)
class Refined:
    offset_s: float
    correlation: float


def envelope(x: np.ndarray, sample_rate: int, *, hop_s: float = ENVELOPE_HOP_S) -> np.ndarray:
    """RMS of consecutive ``hop_s`` blocks (float64); a trailing partial block is dropped."""
    n = max(int(round(hop_s * sample_rate)), 1)
    m = x.size // n
    if m == 0:
        return np.zeros(0)
    b = np.asarray(x[: m * n], dtype=np.float64).reshape(m, n)
    return np.sqrt((b * b).mean(axis=1))


def best_lag(query_env: np.ndarray, ref_env: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation): where ``query_env`` fits best inside ``ref_env`` (longer or equal)."""
    q = query_env - query_env.mean()
    qn = np.linalg.norm(q)
    L = q.size
    if L == 0 or ref_env.size < L or qn == 0:
        return 0, 0.0
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(ref_env, L)  # [lags, L]
    wc = win - win.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(wc, axis=1) * qn
    corr = np.where(norms > 0, wc @ q / np.maximum(norms, 1e-300), 0.0)
    i = int(np.argmax(corr))
    return i, float(corr[i])


def read_stretch(path: str | Path, *, start_s: float, end_s: float, sample_rate: int) -> np.ndarray:
    """Samples ``start_s``..``end_s`` of a recording, mono at ``sample_rate`` (seeking when the format allows),
    decoded by :func:`audiosim.engine.audio.decode.read_span` under ingest's limits."""
    start = max(float(start_s), 0.0)
    x, sr = read_span(path, offset_s=start, duration_s=max(float(end_s) - start, 0.0))
    return resample(to_mono_float(x, nan_policy="zero", source=str(path)), orig_sr=sr, target_sr=sample_rate)


def refine_offset(query: np.ndarray, sample_rate: int, path: str | Path, coarse_s: float, *,
                  search_s: float) -> Refined | None:
    """The excerpt's offset in ``path`` within ``search_s`` of ``coarse_s``, or None when it cannot be trusted."""
    dur = query.size / sample_rate
    start = max(coarse_s - search_s, 0.0)
    try:
        ref = read_stretch(path, start_s=start, end_s=coarse_s + dur + search_s, sample_rate=sample_rate)
    except Exception:  # the recording moved or changed since it was indexed: the vote's offset stands
        return None
    lag, corr = best_lag(envelope(query, sample_rate), envelope(ref, sample_rate))
    if corr < MIN_CORRELATION:
        return None
    return Refined(offset_s=start + lag * ENVELOPE_HOP_S, correlation=corr)

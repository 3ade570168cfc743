"""Check a candidate place of an excerpt on the recording's audio, and refine its offset beyond the segment grid.

The votes of :mod:`audiosim.engine.search.locate` name a few places, each to within about a hop.
:func:`check_place` reads the stretch of the recording around a place (``search_s`` either way),
prints it (:mod:`audiosim.engine.search.excerpt_print`, :data:`FINE`: 16 ms frames) and slides the
excerpt's template over it; of the :data:`LAG_CANDIDATES` best-correlating lags, the one whose
levels agree best both ways (:func:`audiosim.engine.search.excerpt_print.agreement`: a pause of
the excerpt must not meet sound in the recording) is the refined offset, and the correlation
there is how well the place holds the excerpt. The template counts only the excerpt's
cells well above its own noise floor, centred per band, so an added noise floor, a gain change,
a lossy re-encode or resampling leave a true place scoring high; the recording's digital silence
is never excused where the excerpt has sound. When the recording cannot be read (moved,
changed) the place is not checked (``None``) and the caller keeps the vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import read_span, resample, to_mono_float
from audiosim.engine.search.excerpt_print import FINE, PrintSpec, Template, agreement, correlate, log_mel_print
from audiosim.errors import AudiosimError

LAG_CANDIDATES = 5  # best-correlating lags compared both ways (:func:`audiosim.engine.search.excerpt_print.agreement`)
LAG_GAP_FRAMES = 4  # ... at least this many frames (64 ms) apart


@dataclass(frozen=True)
class Refined:
    """A checked place: the excerpt's offset in the recording and the print correlation there."""

    offset_s: float
    correlation: float


def read_stretch(path: str | Path, *, start_s: float, end_s: float, sample_rate: int) -> np.ndarray:
    """Samples ``start_s``..``end_s`` of a recording, mono at ``sample_rate`` (seeking when the format allows),
    decoded by :func:`audiosim.engine.audio.decode.read_span` under ingest's limits."""
    start = max(float(start_s), 0.0)
    x, sr = read_span(path, offset_s=start, duration_s=max(float(end_s) - start, 0.0))
    return resample(to_mono_float(x, nan_policy="zero", source=str(path)), orig_sr=sr, target_sr=sample_rate)


def check_place(template: Template, path: str | Path, coarse_s: float, *, duration_s: float, search_s: float,
                sample_rate: int, spec: PrintSpec = FINE) -> Refined | None:
    """The best offset of the excerpt (``template``, printed with ``spec``) within ``search_s`` of ``coarse_s`` in
    ``path``, with its correlation; None when the recording cannot be read or holds no such stretch."""
    start = max(coarse_s - search_s, 0.0)
    try:
        ref = read_stretch(path, start_s=start, end_s=coarse_s + duration_s + search_s, sample_rate=sample_rate)
    except (AudiosimError, OSError):  # the recording moved or changed since it was indexed: the vote stands
        return None
    levels = log_mel_print(ref, sample_rate, spec)
    corr = correlate(template, levels)
    if corr.size == 0:
        return None
    # the best few lags by correlation; of those, the one that agrees best both ways (a periodic sound
    # correlates almost as well a period away, where a pause of the excerpt meets sound)
    T = template.frames
    lags = _peaks(corr, n=LAG_CANDIDATES, min_gap=LAG_GAP_FRAMES)
    lag = max(lags, key=lambda i: agreement(template, levels[:, i:i + T]))
    return Refined(offset_s=start + lag * spec.hop_s(sample_rate), correlation=float(corr[lag]))


def _peaks(corr: np.ndarray, *, n: int, min_gap: int) -> list[int]:
    """Up to ``n`` lags of the highest ``corr``, greedily, at least ``min_gap`` apart (best first)."""
    out: list[int] = []
    for i in np.argsort(-corr, kind="stable"):
        if all(abs(int(i) - j) >= min_gap for j in out):
            out.append(int(i))
            if len(out) == n:
                break
    return out

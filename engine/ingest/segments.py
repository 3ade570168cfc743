"""The segment grid of long recordings, shared by ingest (segment vectors) and search (excerpt location).

A recording of ``duration_s`` seconds is cut into segments of ``segment_s`` seconds starting at
0, hop, 2 hop, ... (``hop_s`` defaults to ``segment_s``: no overlap; ``hop_s < segment_s``:
overlapping segments) while the start lies inside the recording — at least one segment — and
each segment's duration is cut at the end of the recording. A segment's vector pools the
embedder frames whose *start time* lies in ``[start, start + segment_s)``; a segment holding no
frame start (a tail shorter than the embedder's hop) is skipped, and a recording shorter than
one embedder hop is one segment of all its frames.
"""

from __future__ import annotations

import math

import numpy as np

from audiosim.errors import SegmentError

EPS_S = 1e-9


def check_segments(segment_s: float, hop_s: float | None) -> float:
    """``hop_s`` (``segment_s`` when None) after checking 0 < hop_s <= segment_s."""
    hop = segment_s if hop_s is None else hop_s
    if not (segment_s > 0 and math.isfinite(segment_s)):
        raise SegmentError(f"segment_s must be a positive number of seconds, got {segment_s}")
    if not (0 < hop <= segment_s):
        raise SegmentError(f"segment hop must be in (0, segment_s={segment_s}], got {hop}")
    return float(hop)


def segment_grid(duration_s: float, *, segment_s: float, hop_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start times and durations (float64) of the segments of a ``duration_s`` recording.

    See the module docstring; ``hop_s`` defaults to ``segment_s``.
    """
    hop = check_segments(segment_s, hop_s)
    duration_s = max(float(duration_s), 0.0)
    n = max(1, math.ceil(max(duration_s, 1e-12) / hop - EPS_S))
    offsets = np.arange(n, dtype=np.float64) * hop
    return offsets, np.minimum(segment_s, duration_s - offsets).clip(min=0.0)


def frames_in_segments(times_s: np.ndarray, offsets_s: np.ndarray, *, segment_s: float) -> list[np.ndarray]:
    """Per segment, the indices of the frames whose start time lies in [offset, offset + segment_s).

    A segment can come back empty (a tail shorter than the frame hop): skip it, as
    :func:`segments_with_frames` does.
    """
    t = np.asarray(times_s, dtype=np.float64)
    out = []
    for off in np.asarray(offsets_s, dtype=np.float64):
        lo = np.searchsorted(t, off - EPS_S, side="left")
        hi = np.searchsorted(t, off + segment_s - EPS_S, side="left")
        out.append(np.arange(lo, hi, dtype=np.int64))
    return out


def segments_with_frames(times_s: np.ndarray, duration_s: float, *, segment_s: float,
                         hop_s: float | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The segments of a recording that hold at least one frame start: (offsets_s, durations_s, frame indices).

    When none does (a recording shorter than one embedder hop), its frames form one segment
    ``(0, duration_s)``.
    """
    offsets, durations = segment_grid(duration_s, segment_s=segment_s, hop_s=hop_s)
    members = frames_in_segments(times_s, offsets, segment_s=segment_s)
    keep = [i for i, m in enumerate(members) if m.size]
    if not keep:
        return (np.zeros(1), np.array([max(float(duration_s), 0.0)]),
                [np.arange(np.asarray(times_s).size, dtype=np.int64)])
    return offsets[keep], durations[keep], [members[i] for i in keep]


def cut_waveform(waveform: np.ndarray, sample_rate: int, *, segment_s: float,
                 hop_s: float | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The query's samples per segment of :func:`segment_grid` and the segments' query-time offsets (s).

    Segments are views into ``waveform``; the last one may be shorter than ``segment_s``.
    """
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise SegmentError(f"cut_waveform takes a mono 1-D waveform, got shape {x.shape}")
    if sample_rate <= 0:
        raise SegmentError(f"sample_rate must be positive, got {sample_rate}")
    offsets, durations = segment_grid(x.size / sample_rate, segment_s=segment_s, hop_s=hop_s)
    pieces = []
    for off, dur in zip(offsets, durations):
        start = int(round(off * sample_rate))
        pieces.append(x[start:start + max(1, int(round(dur * sample_rate)))])
    return pieces, offsets

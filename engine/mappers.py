"""Mappers of the ingest pipeline: what a decoded file becomes (pooled vectors, segment vectors, frames).

:class:`EmbedMapper` embeds a file's frames with an embedder and turns them into :class:`Rows`:
one vector per file, one per segment (``segment_s`` long, every ``segment_hop_s``; segments may
overlap), or one per model window (``frames=True``, used by the ESC-50 cache).
"""

from __future__ import annotations

import numpy as np

from audiosim.engine.pipeline import Decoded
from audiosim.engine.pooling import PoolingSpec
from audiosim.engine.store import Rows
from audiosim.errors import AudiosimError


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

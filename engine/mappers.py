"""Mappers of the ingest pipeline: what a decoded file becomes (pooled vectors, segment vectors, frames).

:class:`EmbedMapper` embeds a file's frames with an embedder and turns them into :class:`Rows`:
one vector per file, one per segment (``segment_s`` long, every ``segment_hop_s``; segments may
overlap; the grid of :mod:`audiosim.engine.segments`), or one per model window (``frames=True``,
used by the ESC-50 cache).
"""

from __future__ import annotations

import numpy as np

from audiosim.engine.pipeline import Decoded
from audiosim.engine.pooling import PoolingSpec
from audiosim.engine.segments import segments_with_frames
from audiosim.engine.streaming import DEFAULT_CHUNK_S
from audiosim.engine.store import Rows


def segment_frames(frames: np.ndarray, times: np.ndarray, *, segment_s: float | None, duration_s: float,
                   pooling: PoolingSpec, segment_hop_s: float | None = None) -> list[tuple[float, float, np.ndarray]]:
    """Pool frames into one vector per clip, or per segment of :mod:`audiosim.engine.segments`: ``(offset_s, duration_s, vector)``."""
    if not segment_s:
        return [(0.0, duration_s, pooling(frames))]
    offsets, durations, members = segments_with_frames(times, duration_s, segment_s=segment_s, hop_s=segment_hop_s)
    return [(float(o), float(d), pooling(frames[m])) for o, d, m in zip(offsets, durations, members)]


class EmbedMapper:
    """``Decoded -> Rows``: embed frames, then pool per file, per segment, or keep every frame.

    ``frames=True`` stores one row per model window (offset = window start, duration = the
    window, cut at the end of the recording); otherwise :func:`segment_frames` decides.
    Recordings longer than ``chunk_s`` are embedded piece by piece
    (:mod:`audiosim.engine.streaming`: the frames equal a whole-file call, the model's memory
    stays that of one piece); a file the reader left to stream is decoded while it is embedded.
    """

    def __init__(self, embedder, pooling: PoolingSpec, *, segment_s: float | None = None,
                 segment_hop_s: float | None = None, frames: bool = False, chunk_s: float = DEFAULT_CHUNK_S) -> None:
        self.embedder, self.pooling = embedder, pooling
        self.segment_s, self.segment_hop_s, self.frames, self.chunk_s = segment_s, segment_hop_s, frames, chunk_s

    def embed(self, d: Decoded) -> tuple[np.ndarray, np.ndarray, float, str]:
        """(frames, times, duration_s, sha256 of the bytes decoded) of one decoded (or to-be-streamed) file."""
        from audiosim.engine.streaming import embed_file, embed_stream

        if d.audio is None and d.stream is not None:
            ef = embed_file(self.embedder, d.item.path, nan_policy=d.stream.nan_policy,
                            max_duration_s=d.stream.max_duration_s, chunk_s=self.chunk_s)
            return ef.frames, ef.times, ef.duration_s, ef.sha256
        if d.audio.size / d.sample_rate > self.chunk_s:
            frames, times = embed_stream(self.embedder, [d.audio], chunk_s=self.chunk_s)
        else:
            frames, times = self.embedder.embed_frames(d.audio)
        return frames, times, d.duration_s, d.sha256

    def __call__(self, d: Decoded) -> Rows:
        info = self.embedder.info
        frames, times, duration, sha = self.embed(d)
        if self.frames:
            t = np.asarray(times, dtype=np.float64)
            return Rows(path=[d.item.path] * len(t), content_sha256=[sha] * len(t), offset_s=t,
                        duration_s=np.clip(duration - t, 1e-9, info.window_s), label=[d.item.label] * len(t),
                        embedding=np.asarray(frames, dtype=np.float32))
        pooled = segment_frames(frames, times, segment_s=self.segment_s, segment_hop_s=self.segment_hop_s,
                                duration_s=duration, pooling=self.pooling)
        n = len(pooled)
        return Rows(path=[d.item.path] * n, content_sha256=[sha] * n,
                    offset_s=np.array([p[0] for p in pooled], dtype=np.float64),
                    duration_s=np.array([p[1] for p in pooled], dtype=np.float64),
                    label=[d.item.label] * n, embedding=np.stack([p[2] for p in pooled]).astype(np.float32))

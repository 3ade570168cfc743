"""Mappers of the ingest pipeline: what a decoded file becomes (pooled vectors, segment vectors, frames).

:class:`EmbedMapper` embeds a file's frames with an embedder and turns them into :class:`Rows`:
one vector per file, one per segment (``segment_s`` long, every ``segment_hop_s``; segments may
overlap; the grid of :mod:`audiosim.engine.ingest.segments`), or one per model window (``frames=True``,
used by the ESC-50 cache).
"""

from __future__ import annotations

import numpy as np

from audiosim.engine.audio.streaming import DEFAULT_CHUNK_S, embed_file, embed_stream
from audiosim.engine.ingest.pipeline import Decoded
from audiosim.engine.ingest.segments import segments_with_frames
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.models.tags import vector_tags
from audiosim.engine.store.store import Rows
from audiosim.errors import AudiosimError, SilentAudioError

SILENCE_TOLERANCE = 1e-3  # relative L2 distance under which a frame counts as the digital-silence frame


def silence_frame(embedder) -> np.ndarray:
    """The embedder's frame of an all-zero window (float64 [D]): what digital silence looks like to the model."""
    info = embedder.info
    zeros = np.zeros(int(round((info.window_s + info.hop_s) * info.sample_rate)), dtype=np.float32)
    return np.asarray(embedder.embed_frames(zeros)[0][0], dtype=np.float64)


def silent_frames(frames: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """Boolean [T]: the frames within :data:`SILENCE_TOLERANCE` (relative L2) of the ``silence`` frame."""
    f = np.asarray(frames, dtype=np.float64)
    if f.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    dist = np.linalg.norm(f - silence, axis=1)
    return dist <= SILENCE_TOLERANCE * max(float(np.linalg.norm(silence)), 1e-6)


class FramePooler:
    """Pools frames with a :class:`PoolingSpec`; with ``skip_silence``, leaves out the digital-silence frames.

    The embedder's digital-silence frame is its frame of an all-zero window (:func:`silence_frame`,
    computed once). A frame within :data:`SILENCE_TOLERANCE` (relative L2 distance) of it is
    silent: the window is digital silence, or sound so faint that the model cannot tell it from
    silence (the floor depends on the model's front end; for YAMNet, white noise below about
    -100 dBFS, see docs/benchmarks-silence.md). Silence is left out by default for new
    collections (``--keep-silence`` keeps it).

    A clip or segment whose every frame is silent has nothing to pool: :meth:`__call__` raises
    :class:`SilentAudioError` (never a vector of silence that matches every padded clip);
    :meth:`keep` returns no members, and ingest drops such segments and reports a file that is
    silent throughout. Callable like the spec itself: ``pooler(frames) -> vector``.
    """

    def __init__(self, embedder, spec: PoolingSpec, *, silence: np.ndarray | None = None) -> None:
        self.spec = spec
        self._silence = None
        if spec.skip_silence:
            self._silence = np.asarray(silence, dtype=np.float64) if silence is not None else silence_frame(embedder)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def skips(self) -> bool:
        return self._silence is not None

    def silent(self, frames: np.ndarray) -> np.ndarray:
        """Boolean [T]: the frames that are the digital-silence frame (all False without ``skip_silence``)."""
        if self._silence is None:
            return np.zeros(np.asarray(frames).shape[0], dtype=bool)
        return silent_frames(frames, self._silence)

    def keep(self, frames: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
        """The frame indices (of ``members``, default all) to pool: the non-silent ones (possibly none)."""
        idx = np.arange(len(frames)) if members is None else np.asarray(members, dtype=np.int64)
        if self._silence is None or idx.size == 0:
            return idx
        return idx[~self.silent(np.asarray(frames)[idx])]

    def members(self, frames: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
        """Like :meth:`keep`, but all of ``members`` when every one is silent (for summaries that need frames)."""
        idx = np.arange(len(frames)) if members is None else np.asarray(members, dtype=np.int64)
        keep = self.keep(frames, idx)
        return keep if keep.size else idx

    def __call__(self, frames: np.ndarray, *, what: str = "the audio") -> np.ndarray:
        keep = self.keep(frames)
        if keep.size == 0:
            raise SilentAudioError(
                f"{what} is digital silence throughout: with silence left out there is nothing to compare; give a "
                "recording with sound, or use a collection indexed with --keep-silence")
        return self.spec(np.asarray(frames)[keep])


def segment_frames(frames: np.ndarray, times: np.ndarray, *, segment_s: float | None, duration_s: float,
                   pooling: PoolingSpec | FramePooler,
                   segment_hop_s: float | None = None) -> list[tuple[float, float, np.ndarray]]:
    """Pool frames into one vector per clip, or per segment of :mod:`audiosim.engine.ingest.segments`: ``(offset_s, duration_s, vector)``.

    With a :class:`FramePooler` that leaves silence out, segments that are silent throughout are
    left out (as ingest does); a query that is silent throughout is a :class:`SilentAudioError`.
    """
    if not segment_s:
        return [(0.0, duration_s, pooling(frames))]
    offsets, durations, members = segments_with_frames(times, duration_s, segment_s=segment_s, hop_s=segment_hop_s)
    if not isinstance(pooling, FramePooler):
        return [(float(o), float(d), pooling(frames[m])) for o, d, m in zip(offsets, durations, members)]
    out = []
    for o, d, m in zip(offsets, durations, members):
        keep = pooling.keep(frames, m)
        if keep.size:
            out.append((float(o), float(d), pooling.spec(np.asarray(frames)[keep])))
    if not out:
        raise SilentAudioError("the query is digital silence throughout: with silence left out there is nothing to "
                               "compare; give a recording with sound, or use a collection indexed with --keep-silence")
    return out


class EmbedMapper:
    """``Decoded -> Rows``: embed frames, then pool per file, per segment, or keep every frame.

    ``frames=True`` stores one row per model window (offset = window start, duration = the
    window, cut at the end of the recording); otherwise :func:`segment_frames` decides.
    Recordings longer than ``chunk_s`` are embedded piece by piece
    (:mod:`audiosim.engine.audio.streaming`: the frames equal a whole-file call, the model's memory
    stays that of one piece); a file the reader left to stream is decoded while it is embedded.
    """

    def __init__(self, embedder, pooling: PoolingSpec, *, segment_s: float | None = None,
                 segment_hop_s: float | None = None, frames: bool = False, tags: bool = False,
                 chunk_s: float = DEFAULT_CHUNK_S) -> None:
        self.embedder, self.pooling = embedder, FramePooler(embedder, pooling)
        self.segment_s, self.segment_hop_s, self.frames, self.chunk_s = segment_s, segment_hop_s, frames, chunk_s
        self.tags = tags

    def embed(self, d: Decoded) -> tuple:
        """(frames, times, duration_s, sha256 of the bytes decoded, class scores or None) of one file."""

        if d.audio is None and d.stream is not None:
            ef = embed_file(self.embedder, d.item.path, nan_policy=d.stream.nan_policy,
                            max_duration_s=d.stream.max_duration_s, chunk_s=self.chunk_s, scores=self.tags)
            return ef.frames, ef.times, ef.duration_s, ef.sha256, ef.scores
        if d.audio.size / d.sample_rate > self.chunk_s:
            out = embed_stream(self.embedder, [d.audio], chunk_s=self.chunk_s, scores=self.tags)
        elif self.tags:
            out = self.embedder.embed_frames_with_scores(d.audio)
        else:
            out = self.embedder.embed_frames(d.audio)
        return out[0], out[1], d.duration_s, d.sha256, (out[2] if self.tags else None)

    @property
    def batches(self) -> bool:
        """Whether :meth:`map_batch` pays: the embedder runs the windows of several files in one forward pass."""
        return bool(getattr(self.embedder, "BATCHES_WINDOWS", False))

    def batchable(self, d: Decoded) -> bool:
        """A decoded file :meth:`map_batch` embeds with others: in memory and no longer than one chunk."""
        return d.error is None and d.audio is not None and d.audio.size / d.sample_rate <= self.chunk_s

    def map_batch(self, ds: list[Decoded]) -> list:
        """:meth:`__call__` of several :meth:`batchable` files, their windows embedded together
        (:meth:`audiosim.engine.models.embedders.base.Embedder.embed_batch`): one :class:`Rows` or the exception
        per file, in order. When the batch itself fails, each file is mapped alone, so one bad file fails alone."""
        try:
            outs = self.embedder.embed_batch([d.audio for d in ds], scores=self.tags)
        except (AudiosimError, ValueError, MemoryError):
            outs = None
        results = []
        for i, d in enumerate(ds):
            try:
                if outs is None:
                    results.append(self(d))
                else:
                    o = outs[i]
                    results.append(self._rows(d, o[0], o[1], d.duration_s, d.sha256, o[2] if self.tags else None))
            except (AudiosimError, ValueError, MemoryError) as e:
                results.append(e)
        return results

    def __call__(self, d: Decoded) -> Rows:
        return self._rows(d, *self.embed(d))

    def _rows(self, d: Decoded, frames, times, duration, sha, scores) -> Rows:
        """The rows of one file from its frame embeddings (and class scores when tagging)."""
        info = self.embedder.info
        t = np.asarray(times, dtype=np.float64)
        if self.frames:
            members = [np.array([i]) for i in range(len(t))]
            rows = dict(offset_s=t, duration_s=np.clip(duration - t, 1e-9, info.window_s),
                        embedding=np.asarray(frames, dtype=np.float32))
        else:
            if self.segment_s:
                offsets, durations, members = segments_with_frames(t, duration, segment_s=self.segment_s,
                                                                   hop_s=self.segment_hop_s)
            else:
                offsets, durations, members = np.zeros(1), np.array([duration]), [np.arange(len(t))]
            members = [self.pooling.keep(frames, m) for m in members]
            sound = [i for i, m in enumerate(members) if m.size]  # silent segments (gaps) are not stored
            if not sound:
                raise SilentAudioError(
                    f"{d.item.path} is digital silence throughout: with silence left out there is nothing to index "
                    "(index it into a collection made with --keep-silence to store silent files)")
            members = [members[i] for i in sound]
            rows = dict(offset_s=np.asarray(offsets, dtype=np.float64)[sound],
                        duration_s=np.asarray(durations, dtype=np.float64)[sound],
                        embedding=np.stack([self.pooling.spec(frames[m]) for m in members]).astype(np.float32))
        n = len(rows["offset_s"])
        tag_ids, tag_scores = vector_tags(scores, members) if self.tags else (None, None)
        return Rows(path=[d.item.path] * n, content_sha256=[sha] * n, label=[d.item.label] * n, tag_ids=tag_ids,
                    tag_scores=tag_scores, **rows)

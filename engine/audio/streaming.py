"""Embed recordings of any length in bounded memory: chunked frames equal whole-file frames.

Every registered embedder cuts a waveform into analysis windows every ``hop`` samples and
embeds each window on its own; its :class:`~audiosim.engine.models.embedders.base.EmbedderInfo`
gives ``window_s``, ``hop_s`` and ``sample_rate``. :class:`FrameStitcher` feeds it overlapping
pieces of the signal and keeps only frames whose input lay wholly inside the piece, so the
stitched frames equal ``embedder.embed_frames(whole_waveform)`` (to float rounding):

* ``H`` = hop in samples (``hop_s * sample_rate``, which must be a whole number), ``C`` =
  context = ``ceil((window_s + 0.1) * sample_rate) + H`` samples: at least the span one frame
  reads (a spectrogram front end reads one STFT window past ``window_s``: 15 600 samples for
  YAMNet's 0.96 s window; every registered front end's extra is under 0.1 s);
* while the buffer holds at least ``K * H + C`` samples (``K`` = ``chunk_s / hop_s`` frames per
  step), embed its first ``(K - 1) * H + C`` samples, keep the first ``K`` frames, drop the first
  ``K * H`` samples. Every piece starts on a hop boundary and every kept frame has its whole input;
* at the end, embed what is left (at least ``C`` samples, or the whole recording when it is
  shorter than one step) and keep every frame. Because that piece starts on a hop boundary and
  is longer than one window, the embedder's own end-of-signal rule (pad a partial hop as YAMNet
  and ``logmel`` do, drop it as VGGish does, windows that fit as PANNs does) yields exactly the
  whole file's last frames.

A context larger than needed only costs overlap (under 2 % for YAMNet at 60 s chunks), so
``context_s`` may be raised for an embedder with a wider receptive field; it must never be
smaller than the span one frame reads. Frame times are ``embedder.frame_times(n_frames)``, as
for a whole-file call. An embedder whose hop is not a whole number of samples is embedded in
one piece (memory then grows with the file).

Public API:

* :func:`embed_stream` ``(embedder, chunks) -> (frames, times)`` over any iterable of mono
  float32 chunks at the embedder's rate (e.g. an :class:`~audiosim.engine.audio.decode.AudioStream`);
  ``scores=True`` also stitches the class scores of an embedder with a classifier head;
* :class:`FrameStitcher` for callers that consume frames as they come (``push``/``finish``);
* :func:`embed_file` ``(embedder, path) -> EmbeddedFile``: decode (:func:`~audiosim.engine.audio.decode.open_audio`,
  hashing the bytes it decodes) and embed in one pass; the result carries the frames, their
  times, the decoded duration and the sha256 of exactly the bytes that were decoded. A
  ``MemoryError`` becomes :class:`~audiosim.engine.audio.decode.AudioMemoryError` for that file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import DEFAULT_MAX_DURATION_S, AudioInfo, AudioMemoryError, open_audio
from audiosim.errors import InvalidOptionError

DEFAULT_CHUNK_S = 60.0
FRONT_END_MARGIN_S = 0.1


@dataclass(frozen=True)
class StreamPlan:
    """How a waveform is cut: ``hop`` and ``context`` samples, ``frames_per_step`` kept per piece.

    ``hop`` is None when the embedder's hop is not a whole number of samples (one piece then).
    """

    hop: int | None
    context: int
    frames_per_step: int

    @property
    def step_samples(self) -> int:
        """Samples embedded per intermediate piece."""
        return (self.frames_per_step - 1) * (self.hop or 0) + self.context

    @classmethod
    def for_embedder(cls, embedder, *, chunk_s: float = DEFAULT_CHUNK_S, context_s: float | None = None) -> StreamPlan:
        info = embedder.info
        sr = int(info.sample_rate)
        if not chunk_s > 0:
            raise InvalidOptionError(f"chunk_s must be > 0 seconds, got {chunk_s}")
        hop_f = float(info.hop_s) * sr
        hop = round(hop_f)
        if hop < 1 or abs(hop_f - hop) > 1e-6 * max(1.0, hop_f):
            return cls(hop=None, context=0, frames_per_step=1)
        if context_s is None:
            context = math.ceil((float(info.window_s) + FRONT_END_MARGIN_S) * sr) + hop
        else:
            context = math.ceil(float(context_s) * sr)
            if context < 1:
                raise InvalidOptionError(f"context_s must be > 0 seconds, got {context_s}")
        return cls(hop=hop, context=context, frames_per_step=max(1, round(chunk_s / float(info.hop_s))))


class FrameStitcher:
    """Push mono chunks, get frames as soon as they are final; :meth:`finish` returns the rest.

    Each block returned by :meth:`push` and :meth:`finish` is a tuple ``(frames[k, D],)``, or
    ``(frames[k, D], scores[k, C])`` with ``scores=True`` (the embedder's
    ``embed_frames_with_scores``). Concatenated, the blocks equal ``embedder.embed_frames(all
    samples)[0]`` (and its scores) -- see the module docstring.
    """

    def __init__(self, embedder, *, chunk_s: float = DEFAULT_CHUNK_S, context_s: float | None = None,
                 scores: bool = False) -> None:
        self.embedder = embedder
        self.scores = bool(scores)
        self.plan = StreamPlan.for_embedder(embedder, chunk_s=chunk_s, context_s=context_s)
        self.n_samples = 0
        self.n_frames = 0
        self._parts: list[np.ndarray] = []  # unconsumed samples, in order
        self._buffered = 0
        self._finished = False

    def _take(self) -> np.ndarray:
        buf = np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
        self._parts = [buf]
        return buf

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.scores:
            frames, _, scores = self.embedder.embed_frames_with_scores(x)
            return frames, scores
        return (self.embedder.embed_frames(x)[0],)

    def push(self, chunk: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """Add samples; return the blocks of frames that no later sample can change."""
        if self._finished:
            raise InvalidOptionError("FrameStitcher.push after finish(); make a new stitcher per recording")
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        self._parts.append(x)
        self._buffered += x.size
        self.n_samples += x.size
        plan = self.plan
        out: list[tuple[np.ndarray, ...]] = []
        if plan.hop is None:
            return out
        k = plan.frames_per_step
        advance = k * plan.hop
        while self._buffered >= advance + plan.context:
            buf = self._take()
            arrays = self._run(buf[: plan.step_samples])
            if arrays[0].shape[0] < k:
                raise InvalidOptionError(
                    f"{self.embedder.info.name}: {plan.step_samples} samples gave {arrays[0].shape[0]} frames, expected "
                    f"at least {k}; its info.window_s/hop_s do not describe its framing"
                )
            out.append(tuple(np.ascontiguousarray(a[:k]) for a in arrays))
            self.n_frames += k
            self._parts = [buf[advance:]]
            self._buffered -= advance
        return out

    def finish(self) -> tuple[np.ndarray, ...]:
        """The block of the remaining samples (every frame, with the embedder's end-of-signal rule)."""
        if self._finished:
            raise InvalidOptionError("FrameStitcher.finish() called twice")
        self._finished = True
        rest = self._take() if self._parts else np.zeros(0, dtype=np.float32)
        arrays = self._run(rest)
        self._parts = []
        self.n_frames += arrays[0].shape[0]
        return tuple(np.ascontiguousarray(a) for a in arrays)


def embed_stream(embedder, chunks: Iterable[np.ndarray], *, chunk_s: float = DEFAULT_CHUNK_S,
                 context_s: float | None = None, scores: bool = False) -> tuple[np.ndarray, ...]:
    """``(frames[T, D] float32, times_s[T])`` of the concatenated ``chunks``, computed piecewise.

    Equal to ``embedder.embed_frames(np.concatenate(chunks))`` within float tolerance, with
    memory bounded by one piece of ``chunk_s`` seconds plus the frames themselves. With
    ``scores=True`` the result is ``(frames, times, scores[T, C])``, as the embedder's
    ``embed_frames_with_scores`` returns it for the whole waveform.
    """
    stitcher = FrameStitcher(embedder, chunk_s=chunk_s, context_s=context_s, scores=scores)
    blocks: list[tuple[np.ndarray, ...]] = []
    for chunk in chunks:
        blocks.extend(stitcher.push(chunk))
    blocks.append(stitcher.finish())
    columns = [np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0] for parts in zip(*blocks)]
    frames = np.ascontiguousarray(columns[0], dtype=np.float32)
    times = embedder.frame_times(frames.shape[0])
    return (frames, times) if not scores else (frames, times, columns[1])


@dataclass(frozen=True)
class EmbeddedFile:
    """One recording decoded and embedded in a single pass."""

    path: str
    sha256: str  # of exactly the bytes that were decoded
    frames: np.ndarray  # [T, D] float32
    times: np.ndarray  # [T] frame start times, seconds
    duration_s: float  # decoded samples / embedder sample rate
    info: AudioInfo  # the checked header
    scores: np.ndarray | None = None  # [T, C] class scores when asked for (scores=True)


def embed_file(embedder, path: str | Path, *, nan_policy: str = "error",
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S, chunk_s: float = DEFAULT_CHUNK_S,
               context_s: float | None = None, block_s: float = 10.0, scores: bool = False) -> EmbeddedFile:
    """Decode ``path`` at the embedder's rate and embed it in bounded memory (see the module docstring)."""
    sr = int(embedder.info.sample_rate)
    try:
        with open_audio(path, sample_rate=sr, nan_policy=nan_policy, max_duration_s=max_duration_s,
                        block_s=block_s) as stream:
            out = embed_stream(embedder, stream, chunk_s=chunk_s, context_s=context_s, scores=scores)
            return EmbeddedFile(path=str(path), sha256=stream.sha256, frames=out[0], times=out[1],
                                duration_s=stream.duration_s, info=stream.info,
                                scores=out[2] if scores else None)
    except MemoryError as e:
        raise AudioMemoryError(
            f"{path}: out of memory while embedding it with {embedder.info.name}; lower chunk_s "
            f"(now {chunk_s:g} s) or max_duration_s"
        ) from e

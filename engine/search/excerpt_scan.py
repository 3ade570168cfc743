"""Scan whole recordings for an excerpt's print: the fallback when no place the votes name checks out.

Under a loud noise floor (-40 dBFS and up over quiet sounds) the excerpt's segment vectors can
miss the true place altogether (measured on ESC-50: the true place is among the 20 best-voted
places for 95 % of excerpts at -45 dBFS and 55 % at -30 dBFS), while its audio print still finds
it. :func:`scan_recordings` streams each recording once (libsndfile, or ingest's decoder
:func:`audiosim.engine.audio.decode.open_audio` for the formats it alone reads), prints it at
:data:`audiosim.engine.search.excerpt_print.COARSE` resolution (64 ms frames) as it goes, and
correlates the excerpt's templates with it block by block (memory stays bounded by
:data:`BLOCK_FRAMES`); the excerpt is printed at :data:`PHASES` sub-frame shifts
(:func:`phase_templates`), since a transient sound printed off the recording's frame grid
correlates poorly. Each recording's :data:`PEAKS_PER_FILE` best places, at least ``min_gap_s``
apart, come back as :class:`Peak` s for a fine check. A recording that cannot be read is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from audiosim.engine.audio.decode import StreamResampler, open_audio
from audiosim.engine.audio.frontend import mel_filterbank
from audiosim.engine.search.excerpt_print import COARSE, PrintSpec, Template, correlate_many, log_mel_print
from audiosim.errors import AudiosimError

BLOCK_FRAMES = 1 << 15  # lags correlated at once (about 35 min of recording at 64 ms)
DECODE_BLOCK_S = 60.0  # seconds decoded (and printed) at a time
PEAKS_PER_FILE = 3
PHASES = 4  # sub-frame shifts of the excerpt's print (16 ms apart at COARSE)


@dataclass(frozen=True)
class Peak:
    path: str
    offset_s: float
    correlation: float


def _top_peaks(corr: np.ndarray, base: int, *, n: int, min_gap: int) -> list[tuple[float, int]]:
    """Up to ``n`` (correlation, lag + base) of ``corr``, greedily, at least ``min_gap`` lags apart."""
    if corr.size == 0:
        return []
    k = min(corr.size, 16 * n)
    idx = np.argpartition(-corr, k - 1)[:k]
    out: list[tuple[float, int]] = []
    for i in idx[np.argsort(-corr[idx], kind="stable")]:
        if all(abs(int(i) + base - j) >= min_gap for _, j in out):
            out.append((float(corr[i]), int(i) + base))
            if len(out) == n:
                break
    return out


def _merge(peaks: list[tuple[float, float]], *, n: int, min_gap_s: float) -> list[tuple[float, float]]:
    """Up to ``n`` (correlation, offset_s) of ``peaks``, best first, at least ``min_gap_s`` apart."""
    out: list[tuple[float, float]] = []
    for c, t in sorted(peaks, reverse=True):
        if all(abs(t - u) >= min_gap_s for _, u in out):
            out.append((c, t))
            if len(out) == n:
                break
    return out


def phase_templates(wave: np.ndarray, sample_rate: int, *, spec: PrintSpec = COARSE,
                    phases: int = PHASES) -> list[tuple[Template, float]]:
    """(template, shift_s) of the excerpt printed from ``shift_s = i * hop / phases`` in, ``i < phases``.

    A scan's frames lie on the recording's grid; a transient sound (a clap) printed a third of a
    frame off that grid correlates half as well (0.89 -> 0.40 measured), so the excerpt is printed
    at several sub-frame shifts and the scan keeps each lag's best.
    """
    hop = spec.params(sample_rate).hop_length
    out = []
    for i in range(max(int(phases), 1)):
        k = int(round(i * hop / max(int(phases), 1)))
        out.append((Template.of(log_mel_print(wave[k:], sample_rate, spec)), k / float(sample_rate)))
    return out


def _audio_blocks(path: str | Path, sample_rate: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``DECODE_BLOCK_S`` at ``sample_rate``: read by libsndfile directly when it can
    (no hashing, no checks: the file was checked when it was indexed), else by ingest's decoder."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        with open_audio(path, sample_rate=sample_rate, nan_policy="zero", block_s=DECODE_BLOCK_S) as stream:
            yield from stream
        return
    with f:
        resampler = StreamResampler(orig_sr=int(f.samplerate), target_sr=sample_rate)
        for block in f.blocks(blocksize=int(DECODE_BLOCK_S * f.samplerate), dtype="float32", always_2d=True):
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(mono.sum()):  # NaN or infinity (ingest zeroed or refused them): silence here
                mono = np.where(np.isfinite(mono), mono, np.float32(0.0))
            yield resampler.push(mono)
        yield resampler.finish()


def scan_file(templates: Sequence[tuple[Template, float]], path: str | Path, *, sample_rate: int,
              spec: PrintSpec = COARSE, min_gap_s: float, peaks: int = PEAKS_PER_FILE) -> list[Peak]:
    """The best ``peaks`` places in one recording of an excerpt printed with ``spec`` (:func:`phase_templates`:
    each template with the time its print starts into the excerpt), best first, at least ``min_gap_s`` apart."""
    p = spec.params(sample_rate)
    basis = mel_filterbank(p)
    hop_s = p.hop_length / float(sample_rate)
    usable = [(t, shift) for t, shift in templates if t.usable]
    if not usable:
        return []
    T = max(t.frames for t, _ in usable)
    min_gap = max(int(round(min_gap_s / hop_s)), 1)
    found: list[tuple[float, float]] = []
    frames: list[np.ndarray] = []  # print columns not yet correlated past
    held, dropped = 0, 0  # columns in ``frames``; columns dropped before them
    pending = np.zeros(0, dtype=np.float32)  # samples not yet printed

    def flush(final: bool) -> None:
        nonlocal frames, held, dropped
        while held >= BLOCK_FRAMES + T - 1 or (final and held >= T):
            levels = np.concatenate(frames, axis=1)
            span = min(held, BLOCK_FRAMES + T - 1)
            step = span - T + 1
            for (t, shift), corr in zip(usable, correlate_many([t for t, _ in usable], levels[:, :span])):
                found.extend((c, j * hop_s - shift) for c, j in _top_peaks(corr[:step], dropped, n=peaks, min_gap=min_gap))
            frames, held, dropped = [levels[:, step:]], held - step, dropped + step

    try:
        for chunk in _audio_blocks(path, sample_rate):
            if chunk.size:
                pending = np.concatenate([pending, chunk])
            n = 0 if pending.size < p.n_fft else 1 + (pending.size - p.n_fft) // p.hop_length
            if n:
                frames.append(log_mel_print(pending[: (n - 1) * p.hop_length + p.n_fft], sample_rate, spec, basis=basis))
                held += n
                pending = pending[n * p.hop_length:]
                flush(False)
    except (AudiosimError, OSError, RuntimeError):  # moved, changed or damaged since it was indexed: nothing found there
        return []
    flush(True)
    return [Peak(str(path), max(t, 0.0), c) for c, t in _merge(found, n=peaks, min_gap_s=min_gap_s)]


def scan_recordings(templates: Sequence[tuple[Template, float]], paths: Iterable[str], *, sample_rate: int,
                    min_gap_s: float, spec: PrintSpec = COARSE, peaks: int = PEAKS_PER_FILE) -> list[Peak]:
    """:func:`scan_file` over ``paths``; all their peaks, best first."""
    out = [pk for path in paths for pk in scan_file(templates, path, sample_rate=sample_rate, spec=spec,
                                                    min_gap_s=min_gap_s, peaks=peaks)]
    return sorted(out, key=lambda pk: -pk.correlation)

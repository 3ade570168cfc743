"""Do two pieces of audio hold the same recording? A comparison that gain, re-encoding, resampling and small trims leave alone.

A :class:`Print` of a waveform is its log-mel spectrogram at :data:`SAMPLE_RATE` (8 kHz: the band
up to 4 kHz, which an 8 kHz copy still holds; :data:`N_MELS` bands from :data:`FMIN` to
:data:`FMAX`, a :data:`N_FFT`-point window every :data:`HOP` samples = 5 ms), in dB, with the
frames that are digital silence (RMS at or below :data:`SILENCE_DBFS`: padding) marked so they
never count.

:func:`match` aligns two prints and scores them:

1. **Offset**: the per-band-centred spectrograms are cross-correlated over lags of up to
   ``max_offset_s`` (FFT along time, summed over bands, divided by the frames that sound in both);
   the best lag and its two neighbours, and the next :data:`PEAKS` - 1 distinct peaks, are scored.
2. **Gain**: at a lag, over the frames that sound in both, the level difference is the median of
   the cells' dB differences (cells within :data:`RANGE_DB` of their print's loudest): a gain change
   is one number, and the median ignores the cells a codec or a resampler altered.
3. **Score**: cells below the pair's loudest cell minus :data:`RANGE_DB` are raised to that floor
   (quiet detail that a noise floor or a codec changes does not count); the score is the fraction
   of the cells above the floor in either print whose levels agree within :data:`TOLERANCE_DB`.
   A copy scores near 1; two different recordings of one kind of sound (two rain clips, two noise
   renders) disagree in many cells (the fine time-frequency detail of a recording is its own),
   and different sounds in nearly all. On ESC-50 (scripts/bench_dedup.py) copies scored at least
   0.985 and distinct clips at most 0.80, which puts 0.95 (at most 5 % of the cells disagree)
   about at the geometric middle of the disagreement rates (1.5 % and 20 %).

The :class:`Match` says the best lag's score, the offset, the gain and how many seconds of sound
were compared; ``None`` when the two share less than :data:`MIN_COMMON_S` of sounding audio at every
lag (nothing to decide on). :func:`match_stretch` finds the longest agreeing stretch of two longer
prints (for duplicated stretches of recordings). :func:`read_print` decodes a file (its first
:data:`MAX_FILE_S` seconds) or a span of one with the engine's decoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import open_audio, read_span, resample, to_mono_float

SAMPLE_RATE = 8000  # the common rate: keeps 0-4 kHz, the band an 8 kHz copy still holds
N_FFT = 256  # 32 ms windows
HOP = 40  # 5 ms: a trim falls at most 2.5 ms off a frame
N_MELS = 40
FMIN, FMAX = 100.0, 3600.0  # below the 8 kHz copy's anti-alias roll-off
SILENCE_DBFS = -90.0  # frame RMS at or below: digital silence (padding), never compared
RANGE_DB = 30.0  # cells more than this below the loudest are the floor
TOLERANCE_DB = 5.0  # aligned cells within this many dB agree
MAX_OFFSET_S = 0.6  # trims of up to this much at the start are found
MIN_COMMON_S = 0.1  # less sounding audio in common than this: no decision
PEAKS = 3  # cross-correlation peaks scored exactly (the best one with its two neighbouring lags)
MAX_FILE_S = 600  # a whole file is compared on its first ten minutes
_EPS = 1e-12


@dataclass(frozen=True)
class Print:
    """Log-mel levels [frames, N_MELS] (dB) and which frames sound (are not digital silence)."""

    levels: np.ndarray
    sounding: np.ndarray
    centred: np.ndarray  # levels floored RANGE_DB below the loudest, centred per band over sounding frames; silence 0

    @property
    def frames(self) -> int:
        return int(self.sounding.size)

    @property
    def seconds(self) -> float:
        return self.frames * HOP / SAMPLE_RATE

    @property
    def nbytes(self) -> int:
        return int(self.levels.nbytes + self.sounding.nbytes + self.centred.nbytes)


@dataclass(frozen=True)
class Match:
    score: float  # fraction of the cells above the floor whose levels agree within TOLERANCE_DB
    offset_s: float  # b at time t + offset_s holds what a holds at t
    gain_db: float  # b's level minus a's
    common_s: float  # seconds of audio that sound in both and were compared


def print_basis():
    """The prints' mel filterbank as a sparse [N_MELS, N_FFT // 2 + 1] matrix (build it once to print many files).

    Sparse: each band spans a few FFT bins, and a dense BLAS product of these small shapes costs
    more in thread start-up than in arithmetic.
    """
    import librosa
    from scipy.sparse import csr_matrix

    return csr_matrix(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX,
                                          htk=True).astype(np.float32))


def content_print(wave: np.ndarray, *, sample_rate: int, basis=None) -> Print:
    """The :class:`Print` of a mono waveform at ``sample_rate`` Hz (resampled to :data:`SAMPLE_RATE`)."""
    x = resample(np.asarray(wave, dtype=np.float32), orig_sr=int(sample_rate), target_sr=SAMPLE_RATE)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    from scipy.fft import rfft

    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    energy = np.cumsum(np.r_[0.0, x.astype(np.float64) ** 2])
    starts = np.arange(frames.shape[0]) * HOP
    rms_db = 10 * np.log10((energy[starts + N_FFT] - energy[starts]) / N_FFT + 1e-20)
    spec = rfft(frames * np.hanning(N_FFT + 1)[:-1].astype(np.float32), axis=1)  # float32 in, complex64 out
    power = spec.real ** 2 + spec.imag ** 2
    mel = ((basis if basis is not None else print_basis()) @ power.T).T
    levels = np.ascontiguousarray(10 * np.log10(mel + _EPS), dtype=np.float32)
    sounding = rms_db > SILENCE_DBFS
    return Print(levels=levels, sounding=sounding, centred=_centred(levels, sounding))


def read_print(path: str | Path, *, start_s: float = 0.0, end_s: float | None = None, basis=None) -> Print:
    """The :class:`Print` of a file's first :data:`MAX_FILE_S` seconds, or of its span ``start_s`` .. ``end_s``.

    Decoded by the engine's decoders, which raise :class:`~audiosim.errors.AudioDecodeError` for a
    moved, deleted or unreadable file.
    """
    if end_s is None and start_s <= 0:
        parts, total = [], 0
        with open_audio(path, sample_rate=SAMPLE_RATE, nan_policy="zero", max_duration_s=None) as stream:
            for block in stream:  # streamed: a long recording is decoded only as far as MAX_FILE_S
                parts.append(block[:MAX_FILE_S * SAMPLE_RATE - total])
                total += parts[-1].size
                if total >= MAX_FILE_S * SAMPLE_RATE:
                    break
        wave = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return content_print(wave, sample_rate=SAMPLE_RATE, basis=basis)
    start = max(float(start_s), 0.0)
    data, sr = read_span(path, offset_s=start, duration_s=None if end_s is None else max(float(end_s) - start, 0.0))
    wave = to_mono_float(data, nan_policy="zero", source=str(path)) if data.size else np.zeros(0, np.float32)
    return content_print(wave, sample_rate=sr, basis=basis)


def _centred(levels: np.ndarray, sounding: np.ndarray) -> np.ndarray:
    """Levels floored at RANGE_DB below the loudest, centred per band over the sounding frames; silence 0."""
    z = np.zeros_like(levels)
    if not sounding.any():
        return z
    L = levels[sounding]
    L = np.maximum(L, L.max() - RANGE_DB)
    z[sounding] = L - L.mean(axis=0)
    return z


def _lags(a: Print, b: Print, centre: int, max_lag: int) -> list[int]:
    """The lags (b's frame minus a's) within ``centre`` +- ``max_lag`` whose cross-correlation peaks highest, best first."""
    from scipy.fft import irfft, next_fast_len, rfft

    lags = np.arange(centre - max_lag, centre + max_lag + 1)
    lags = lags[(lags > -a.frames) & (lags < b.frames)]
    if lags.size == 0:
        return []
    n = next_fast_len(a.frames + b.frames, real=True)
    cc = irfft((np.conj(rfft(a.centred, n=n, axis=0)) * rfft(b.centred, n=n, axis=0)).sum(axis=1), n=n)
    ones = irfft(np.conj(rfft(a.sounding.astype(np.float32), n=n)) * rfft(b.sounding.astype(np.float32), n=n), n=n)
    # cc[d] = sum_t a[t] . b[t + d]; per frame sounding in both, so a small overlap is not ranked down
    value = cc[lags % n] / np.maximum(np.rint(ones[lags % n]), 1.0)
    picked: list[int] = []
    for lag in lags[np.argsort(-value, kind="stable")]:  # distinct peaks: at least 3 frames apart
        if all(abs(int(lag) - p) > 2 for p in picked):
            picked.append(int(lag))
        if len(picked) == PEAKS:
            break
    return picked


@dataclass(frozen=True)
class Alignment:
    """b's frame ``t + lag`` against a's frame ``t`` for a's frames ``t0 .. t0 + both.size``, after the best gain.

    Per frame: ``both`` (sounds in both prints), ``cells`` (cells above the floor in either) and
    ``agree`` (of those, the cells whose levels agree within :data:`TOLERANCE_DB`); 0 where not ``both``.
    """

    lag: int
    t0: int
    both: np.ndarray
    cells: np.ndarray
    agree: np.ndarray
    gain_db: float

    @property
    def score(self) -> float:
        return float(self.agree.sum() / max(int(self.cells.sum()), 1))

    @property
    def common_s(self) -> float:
        return float(self.both.sum()) * HOP / SAMPLE_RATE


def align(a: Print, b: Print, lag: int) -> Alignment | None:
    """The :class:`Alignment` at ``lag``; None when the prints share less than :data:`MIN_COMMON_S` of sound there."""
    t0, t1 = max(0, -lag), min(a.frames, b.frames - lag)
    if t1 - t0 <= 0:
        return None
    both = a.sounding[t0:t1] & b.sounding[t0 + lag:t1 + lag]
    if int(both.sum()) * HOP / SAMPLE_RATE < MIN_COMMON_S:
        return None
    A = a.levels[t0:t1][both]
    B = b.levels[t0 + lag:t1 + lag][both]
    loud = (A > A.max() - RANGE_DB) & (B > B.max() - RANGE_DB)
    gain = float(np.median((B - A)[loud])) if loud.any() else float(B.max() - A.max())
    B = B - gain
    floor = max(float(A.max()), float(B.max())) - RANGE_DB
    A, B = np.maximum(A, floor), np.maximum(B, floor)
    live = (A > floor) | (B > floor)
    if not live.any():
        return None
    cells = np.zeros(both.size, np.int64)
    agree = np.zeros(both.size, np.int64)
    cells[both] = live.sum(axis=1)
    agree[both] = (live & (np.abs(A - B) <= TOLERANCE_DB)).sum(axis=1)
    return Alignment(lag=int(lag), t0=int(t0), both=both, cells=cells, agree=agree, gain_db=gain)


def _alignments(a: Print, b: Print, max_offset_s: float, centre_s: float = 0.0):
    """The alignments at the cross-correlation's best lags and their neighbours (each lag once)."""
    if not a.sounding.any() or not b.sounding.any():
        return
    max_lag = round(max_offset_s * SAMPLE_RATE / HOP)
    centre = round(centre_s * SAMPLE_RATE / HOP)
    seen: set[int] = set()
    for rank, peak in enumerate(_lags(a, b, centre, max_lag)):
        for lag in (peak, peak - 1, peak + 1) if rank == 0 else (peak,):
            if lag in seen or abs(lag - centre) > max_lag:
                continue
            seen.add(lag)
            al = align(a, b, lag)
            if al is not None:
                yield al


def match(a: Print, b: Print, *, max_offset_s: float = MAX_OFFSET_S) -> Match | None:
    """The best alignment of ``b`` against ``a`` within ``max_offset_s`` and its score (see the module docstring)."""
    best = max(_alignments(a, b, max_offset_s), key=lambda al: al.score, default=None)
    if best is None:
        return None
    return Match(score=best.score, offset_s=best.lag * HOP / SAMPLE_RATE, gain_db=best.gain_db, common_s=best.common_s)


# --------------------------------------------------------------------------- stretches
SMOOTH_S = 0.25  # a stretch's ends: where the agreement over this long a window falls below the threshold


@dataclass(frozen=True)
class StretchMatch:
    """The longest stretch of ``a`` (``a_start_s`` .. ``a_end_s``, print time) that ``b`` holds at ``+ offset_s``."""

    score: float
    a_start_s: float
    a_end_s: float
    offset_s: float
    gain_db: float


def _widen(al: Alignment, s: int, e: int, *, threshold: float, reach: int) -> tuple[int, int]:
    """Frames ``s .. e`` grown by up to ``reach`` frames at either end while each added frame agrees on its own.

    The smoothed agreement falls below the threshold about half a window inside a stretch's true ends;
    this puts the ends back on the frames where the agreement stops.
    """
    def ok(t: int) -> bool:
        return al.cells[t] == 0 or al.agree[t] >= threshold * al.cells[t]

    lo = s
    while lo > max(s - reach, 0) and ok(lo - 1):
        lo -= 1
    hi = e
    while hi < min(e + reach, al.cells.size) and ok(hi):
        hi += 1
    while lo < s and al.cells[lo] == 0:  # silence does not start or end a stretch
        lo += 1
    while hi > e and al.cells[hi - 1] == 0:
        hi -= 1
    return lo, hi


def _stretch(al: Alignment, *, threshold: float, min_s: float) -> tuple[float, int, int] | None:
    """(score, first, end) frame indexes into the alignment of its best agreeing stretch, or None."""
    w = max(round(SMOOTH_S * SAMPLE_RATE / HOP), 1)
    kernel = np.ones(w)
    cells = np.convolve(al.cells, kernel, mode="same")
    agree = np.convolve(al.agree, kernel, mode="same")
    good = (cells > 0) & (agree >= threshold * cells)
    neutral = cells == 0  # silence in either around here: neither extends nor breaks a stretch
    ok = good | neutral
    best = None
    edges = np.flatnonzero(np.diff(np.r_[False, ok, False].astype(np.int8)))
    for s, e in zip(edges[::2], edges[1::2]):
        inside = np.flatnonzero(good[s:e])
        if inside.size == 0:
            continue
        s, e = s + int(inside[0]), s + int(inside[-1]) + 1
        s, e = _widen(al, s, e, threshold=threshold, reach=w)
        c = int(al.cells[s:e].sum())
        if c == 0 or int(al.both[s:e].sum()) * HOP / SAMPLE_RATE < min_s:
            continue
        score = float(al.agree[s:e].sum() / c)
        if score >= threshold and (best is None or c > best[3]):
            best = (score, s, e, c)
    return None if best is None else best[:3]


def match_stretch(a: Print, b: Print, *, threshold: float, min_s: float, max_offset_s: float = MAX_OFFSET_S,
                  centre_s: float = 0.0) -> StretchMatch | None:
    """The longest stretch of ``a`` that ``b`` holds (offset ``centre_s`` +- ``max_offset_s``) scoring at least ``threshold``.

    The two prints may hold more than the shared stretch: its ends are where the agreement over
    :data:`SMOOTH_S` windows falls below ``threshold``; it must hold ``min_s`` seconds of sound.
    """
    best: tuple[float, int, int, Alignment] | None = None
    for al in _alignments(a, b, max_offset_s, centre_s):
        r = _stretch(al, threshold=threshold, min_s=min_s)
        if r is not None and (best is None or (r[2] - r[1], r[0]) > (best[2] - best[1], best[0])):
            best = (*r, al)
    if best is None:
        return None
    score, s, e, al = best
    sec = HOP / SAMPLE_RATE
    return StretchMatch(score=score, a_start_s=(al.t0 + s) * sec, a_end_s=(al.t0 + e) * sec + (N_FFT - HOP) / SAMPLE_RATE,
                        offset_s=al.lag * sec, gain_db=al.gain_db)

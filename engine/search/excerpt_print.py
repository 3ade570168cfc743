"""An excerpt's audio print and the comparison that checks it against a recording at every lag.

The segment vectors place a degraded excerpt only roughly (a noise floor moves an embedding a
long way); the place is then checked on the audio itself. A **print** is a log-mel spectrogram in
dB (:func:`log_mel_print`, with the front end's mel filters): :data:`FINE`, 32 bands of 64 ms
windows every 16 ms, for checking a place; :data:`COARSE`, 24 bands every 64 ms, for scanning
whole recordings. (64 ms windows give even the lowest band several FFT bins: with 32 ms windows
a band of one or two bins lets a white noise floor poke 10 dB above its own floor in a third of
the frames, and those cells spoiled the check.) A :class:`Template` is the part of the excerpt's
print that survives what happens to audio:

* only the **cells well above the excerpt's noise floor** count: per band, the floor is the
  :data:`FLOOR_PERCENTILE` th percentile of the band's levels, averaged in power over
  :data:`FLOOR_SMOOTH_FRAMES` frames (:func:`noise_floor`), and a cell counts when it lies
  :data:`MASK_MARGIN_DB` above it. An added noise floor, and the stretches the recording holds
  as digital silence (where the excerpt holds only that floor), are left out; where a counted
  cell meets silence in the recording it still counts, so a wrong place is not excused.
* each band is **centred** over its counted cells, so a gain change (a constant in dB) and a
  codec's or resampler's tilt of the spectrum (a constant per band) do not count.

:func:`correlate` slides a template over a recording's print: at each lag, the Pearson
correlation of the template's counted cells with the recording's cells under them (each band
centred over those cells), computed for all lags at once with FFTs. A recording stretch flatter
than :data:`MIN_REF_STD_DB` per cell (digital silence) scores 0. :func:`agreement` scores one
lag both ways (also where the recording sounds and the excerpt holds only its floor), to choose
between lags a period apart in a periodic sound.

Measured on excerpts of ESC-50 recordings (``scripts/bench_long.py``): the true place correlates
0.90 or more under white noise up to -30 dBFS, a gain change, Ogg or MP3 re-encoding; the other
places the votes name at most 0.75, and the best of them at least 0.25 below the true one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

from audiosim.engine.audio.frontend import LogMelParams, mel_filterbank

FMIN_HZ = 60.0
FMAX_HZ = 7600.0  # below a 16 kHz Nyquist; a low-rate or lossy copy keeps less, and its emptied cells do not count
FLOOR_DB = -100.0  # log offset: digital silence is -100 dB
FLOOR_PERCENTILE = 10.0  # a band's noise floor: this percentile of its levels ...
FLOOR_SMOOTH_FRAMES = 5  # ... averaged over this many frames (80 ms at FINE)
MASK_MARGIN_DB = 10.0  # a cell counts when at least this far above its band's floor
MIN_CELLS = 40  # a template with fewer counted cells cannot be trusted
MIN_REF_STD_DB = 1.0  # a recording stretch flatter than this (per counted cell) matches nothing


@dataclass(frozen=True)
class PrintSpec:
    """The resolution of a print: STFT size and hop (samples at 16 kHz, scaled to other rates), mel bands."""

    n_fft: int
    hop: int
    bands: int

    def params(self, sample_rate: int) -> LogMelParams:
        scale = sample_rate / 16000.0
        n_fft = max(int(round(self.n_fft * scale)), 16)
        return LogMelParams(sample_rate=int(sample_rate), n_fft=n_fft, hop_length=max(int(round(self.hop * scale)), 1),
                            n_mels=self.bands, fmin=FMIN_HZ, fmax=min(FMAX_HZ, sample_rate / 2.0), mel_scale="htk",
                            power=2.0, log="db", log_offset=10.0 ** (FLOOR_DB / 10.0))

    def hop_s(self, sample_rate: int) -> float:
        return self.params(sample_rate).hop_length / float(sample_rate)


FINE = PrintSpec(n_fft=1024, hop=256, bands=32)
COARSE = PrintSpec(n_fft=1024, hop=1024, bands=24)


ROWS = 8192  # STFT frames transformed at once (bounds the memory of a long stretch)


def log_mel_print(x: np.ndarray, sample_rate: int, spec: PrintSpec, *, basis: np.ndarray | None = None) -> np.ndarray:
    """``[bands, frames]`` float32 log-mel levels (dB) of ``x``; frame ``i`` covers samples ``i * hop .. + n_fft``.

    The filters are the front end's (:func:`audiosim.engine.audio.frontend.mel_filterbank`, HTK mel,
    no norm); the STFT is single precision and block-wise, since a scan prints hours of audio.
    """
    p = spec.params(sample_rate)
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    n = 0 if x.size < p.n_fft else 1 + (x.size - p.n_fft) // p.hop_length
    out = np.empty((spec.bands, n), dtype=np.float32)
    if n == 0:
        return out
    fb = (basis if basis is not None else mel_filterbank(p)).astype(np.float32).T  # [bins, bands]
    win = np.hanning(p.n_fft + 1)[:-1].astype(np.float32)
    if p.hop_length == p.n_fft:
        frames = x[: n * p.n_fft].reshape(n, p.n_fft)
    else:
        frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft)[:: p.hop_length][:n]
    offset = np.float32(10.0 ** (FLOOR_DB / 10.0))
    for a in range(0, n, ROWS):
        spectrum = scipy.fft.rfft(frames[a:a + ROWS] * win, axis=1)  # complex64
        pairs = spectrum.view(np.float32).reshape(spectrum.shape[0], -1, 2)
        power = np.einsum("ijk,ijk->ij", pairs, pairs)
        out[:, a:a + ROWS] = (10.0 * np.log10(power @ fb + offset)).T
    return out


def noise_floor(levels: np.ndarray) -> np.ndarray:
    """``[bands, 1]``: each band's floor, the :data:`FLOOR_PERCENTILE` th percentile of its levels averaged (in
    power) over :data:`FLOOR_SMOOTH_FRAMES` frames. The averaging fills the holes a lossy codec leaves in a
    noise floor (cells it zeroes), which would otherwise pull the floor far below the noise it keeps."""
    power = 10.0 ** (np.asarray(levels, dtype=np.float64) / 10.0)
    smooth = 10.0 * np.log10(uniform_filter1d(power, size=FLOOR_SMOOTH_FRAMES, axis=1, mode="nearest"))
    return np.percentile(smooth, FLOOR_PERCENTILE, axis=1, keepdims=True)


@dataclass(frozen=True)
class Template:
    """The counted, band-centred cells of an excerpt's print (see the module docstring)."""

    centred: np.ndarray  # [bands, frames] float64, 0 outside the counted cells
    mask: np.ndarray  # [bands, frames] float64 (1 = counted)
    count: np.ndarray  # [bands] counted cells per band
    norm: float  # L2 norm of ``centred``
    levels: np.ndarray  # [bands, frames] the excerpt's print
    floor: np.ndarray  # [bands, 1] its noise floor per band

    @property
    def frames(self) -> int:
        return int(self.mask.shape[1])

    @property
    def cells(self) -> int:
        return int(self.count.sum())

    @property
    def usable(self) -> bool:
        return self.cells >= MIN_CELLS and self.norm > 0

    @classmethod
    def of(cls, levels: np.ndarray) -> "Template":
        lv = np.asarray(levels, dtype=np.float64)
        if lv.size == 0:
            return cls(np.zeros_like(lv), np.zeros_like(lv), np.zeros(lv.shape[0]), 0.0, lv, np.zeros((lv.shape[0], 1)))
        floor = noise_floor(lv)
        mask = lv >= floor + MASK_MARGIN_DB
        mask[mask.sum(axis=1) < 2] = False  # a band needs two cells to be centred
        count = mask.sum(axis=1).astype(np.float64)
        mean = np.where(count > 0, (lv * mask).sum(axis=1) / np.maximum(count, 1), 0.0)
        centred = np.where(mask, lv - mean[:, None], 0.0)
        return cls(centred, mask.astype(np.float64), count, float(np.linalg.norm(centred)), lv, floor)


def correlate(template: Template, ref: np.ndarray) -> np.ndarray:
    """Correlation of ``template`` with ``ref`` (``[bands, frames]`` levels) at lags ``0 .. ref frames - template frames``."""
    return correlate_many([template], ref)[0]


def correlate_many(templates: list[Template], ref: np.ndarray) -> list[np.ndarray]:
    """:func:`correlate` of several templates with one ``ref``, transforming ``ref`` once."""
    ref = np.asarray(ref, dtype=np.float64)
    usable = [t for t in templates if t.usable and ref.shape[1] >= t.frames]
    if not usable:
        return [np.zeros(max(ref.shape[1] - t.frames + 1, 0)) for t in templates]
    ref = ref - np.median(ref, axis=1, keepdims=True)  # centring is free here, and keeps the sums of squares small
    n = scipy.fft.next_fast_len(ref.shape[1] + max(t.frames for t in usable) - 1, real=True)
    fr = scipy.fft.rfft(ref, n, axis=1)
    fr2 = scipy.fft.rfft(ref * ref, n, axis=1)
    out = []
    for t in templates:
        lags = ref.shape[1] - t.frames + 1
        if lags <= 0 or not t.usable:
            out.append(np.zeros(max(lags, 0)))
            continue
        fm = np.conj(scipy.fft.rfft(t.mask, n, axis=1))
        ft = np.conj(scipy.fft.rfft(t.centred, n, axis=1))
        # sum_t centred[b, t] * ref[b, t + lag]: the band means of ref under the mask drop out (centred sums to 0)
        num = scipy.fft.irfft((ft * fr).sum(axis=0), n)[:lags]
        s1 = scipy.fft.irfft(fm * fr, n, axis=1)[:, :lags]  # per band: sum of ref under the mask
        s2 = scipy.fft.irfft((fm * fr2).sum(axis=0), n)[:lags]  # sum of ref^2 under the mask
        counted = t.count > 0
        var = s2 - (s1[counted] ** 2 / t.count[counted, None]).sum(axis=0)
        flat = var <= t.cells * MIN_REF_STD_DB ** 2
        out.append(np.where(flat, 0.0, num / (t.norm * np.sqrt(np.maximum(var, 1e-12)))))
    return out


QUIET_MARGIN_DB = 3.0  # in :func:`agreement`, levels below the excerpt's floor + this are "quiet", all alike


def agreement(template: Template, ref: np.ndarray) -> float:
    """How well ``ref`` (the recording's levels under the excerpt, ``[bands, template frames]``) agrees with the
    excerpt both ways: :func:`correlate`'s measure at one lag, but also counting the cells where the recording
    sounds and the excerpt holds only its floor.

    The recording is brought to the excerpt's level (the median level difference over the excerpt's
    counted cells: the gain), both are raised to the excerpt's floor + :data:`QUIET_MARGIN_DB` (a
    noise floor and the quiet detail under it are alike), and the cells where either stands
    :data:`MASK_MARGIN_DB` above the floor are correlated, band-centred. A periodic sound (a
    repeated sweep, a clock) correlates almost as well a period away; where the excerpt then
    holds a pause the recording does not, this tells the two apart.
    """
    ref = np.asarray(ref, dtype=np.float64)
    loud = template.mask > 0
    if ref.shape != template.levels.shape or not loud.any():
        return 0.0
    lifted = ref + float(np.median(template.levels[loud] - ref[loud]))
    base = template.floor + QUIET_MARGIN_DB
    cells = loud | (lifted >= template.floor + MASK_MARGIN_DB)
    e = np.where(cells, np.maximum(template.levels, base), 0.0)
    r = np.where(cells, np.maximum(lifted, base), 0.0)
    n = np.maximum(cells.sum(axis=1, keepdims=True), 1)
    e = np.where(cells, e - e.sum(axis=1, keepdims=True) / n, 0.0)
    r = np.where(cells, r - r.sum(axis=1, keepdims=True) / n, 0.0)
    den = float(np.sqrt((e * e).sum() * (r * r).sum()))
    return float((e * r).sum() / den) if den > 0 else 0.0

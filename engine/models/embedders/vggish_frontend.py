"""The VGGish log-mel front end in NumPy (the reference ``mel_features``/``vggish_input`` recipe).

16 kHz mono -> magnitude STFT (25 ms periodic-Hann window, 10 ms hop, 512-point FFT, no
centring) -> 64 HTK-mel bands over 125-7500 Hz (triangles in mel, DC bin zeroed) ->
``log(mel + 0.01)`` -> non-overlapping 96-frame patches (0.96 s each).

Computed in float64, as the reference NumPy code does; the network receives float32 patches.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
STFT_WINDOW = 400  # 25 ms
STFT_HOP = 160  # 10 ms
FFT_LENGTH = 512  # next power of two above the window
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP_FRAMES = 96  # non-overlapping, as in the reference
MIN_SAMPLES = STFT_WINDOW + (PATCH_FRAMES - 1) * STFT_HOP  # 15600: exactly one patch

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return _MEL_HIGH_Q * np.log1p(np.asarray(hz, dtype=np.float64) / _MEL_BREAK_HZ)


def mel_matrix(*, num_bands: int = NUM_BANDS, num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
               sample_rate: int = SAMPLE_RATE, lower_hz: float = MEL_MIN_HZ,
               upper_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """[num_spectrogram_bins, num_bands] triangular weights, unnormalised, DC row zero."""
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_hz < upper_hz <= nyquist:
        raise ValueError(f"need 0 <= lower_hz < upper_hz <= {nyquist}, got {lower_hz}, {upper_hz}")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower[None, :]) / (center - lower)[None, :]
    falling = (upper[None, :] - bins_mel[:, None]) / (upper - center)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no band energy
    return weights


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))


def frame(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[n_frames, length] views of the whole frames of a 1-D signal (a partial tail is dropped)."""
    n = 1 + (x.shape[0] - length) // hop
    if n < 1:
        return np.zeros((0, length), dtype=x.dtype)
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n]


class VggishFrontend:
    """Waveform -> log-mel spectrogram -> [N, 96, 64] patches, one per 0.96 s."""

    def __init__(self, *, log_offset: float = LOG_OFFSET) -> None:
        self.log_offset = float(log_offset)
        self.mel = mel_matrix()
        self.window = periodic_hann(STFT_WINDOW)

    def magnitude_spectrogram(self, waveform: np.ndarray) -> np.ndarray:
        frames = frame(np.asarray(waveform, dtype=np.float64), STFT_WINDOW, STFT_HOP)
        return np.abs(np.fft.rfft(frames * self.window, FFT_LENGTH, axis=1))

    def mel_spectrogram(self, waveform: np.ndarray) -> np.ndarray:
        """[n_frames, 64] linear mel energies (magnitude spectrogram times the mel matrix)."""
        return self.magnitude_spectrogram(waveform) @ self.mel

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """[n_frames, 64] ``log(mel + log_offset)``, float64; n_frames = 1 + (len - 400) // 160."""
        return np.log(self.mel_spectrogram(waveform) + self.log_offset)

    def patches(self, waveform: np.ndarray) -> np.ndarray:
        """[N, 96, 64] float32 patches; a waveform shorter than one patch is zero-padded to one."""
        x = np.asarray(waveform, dtype=np.float64)
        if x.size < MIN_SAMPLES:
            x = np.pad(x, (0, MIN_SAMPLES - x.size))
        logmel = self.log_mel(x)
        n = 1 + (logmel.shape[0] - PATCH_FRAMES) // PATCH_HOP_FRAMES
        idx = np.arange(n)[:, None] * PATCH_HOP_FRAMES + np.arange(PATCH_FRAMES)[None, :]
        return logmel[idx].astype(np.float32)

"""The one log-mel front end of the handcrafted features (the ``logmel`` embedder and the VAE).

16 kHz audio, 25 ms periodic-Hann STFT windows every 10 ms (512-point FFT), an HTK mel
filterbank. The waveform is zero-padded to at least one model window and then to a whole
number of model-window hops, as YAMNet pads, so a short clip yields one whole window and no
tail is dropped. :func:`mel_energies` returns the linear mel energies; each caller takes its
own log (``log1p(E / 1e-6)`` for the ``logmel`` embedder, ``log(E + 1e-6)`` for the VAE).
"""

from __future__ import annotations

import numpy as np

from audiosim.engine.audio.waveform import check_waveform, pad_to_min_length

SAMPLE_RATE = 16000
STFT_WIN = 400  # 25 ms
STFT_HOP = 160  # 10 ms
N_FFT = 512
LOG_OFFSET = 1e-6


def mel_basis(*, n_mels: int = 64, fmin: float = 125.0, fmax: float = 7500.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_mels, N_FFT // 2 + 1] HTK mel filterbank (librosa)."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True).astype(np.float32)


def periodic_hann() -> np.ndarray:
    return np.hanning(STFT_WIN + 1)[:-1].astype(np.float32)


def mel_energies(waveform: np.ndarray, basis: np.ndarray, *, window_frames: int, hop_frames: int) -> np.ndarray:
    """[n_stft_frames, n_mels] float32 mel energies of a 16 kHz waveform, padded for model windows.

    ``window_frames`` / ``hop_frames``: the model window and its hop, in STFT frames.
    """

    min_len = STFT_WIN + (window_frames - 1) * STFT_HOP
    x = pad_to_min_length(check_waveform(waveform), min_len)
    hop = hop_frames * STFT_HOP
    x = np.pad(x, (0, (-(x.size - min_len)) % hop))
    frames = np.lib.stride_tricks.sliding_window_view(x, STFT_WIN)[::STFT_HOP] * periodic_hann()
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)).astype(np.float32) ** 2
    return (power @ basis.T).astype(np.float32)

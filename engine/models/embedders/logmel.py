"""``logmel``: the weight-free handcrafted baseline.

Per 0.96 s window (0.48 s hop, 16 kHz): mean and standard deviation of 64 log-mel bands
(25 ms STFT window, 10 ms hop, 125-7500 Hz) and of 20 MFCCs -> 168 dimensions.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo
from audiosim.engine.audio.melspec import LOG_OFFSET, SAMPLE_RATE, STFT_HOP, mel_basis, mel_energies

N_MELS = 64
N_MFCC = 20
PATCH = 96  # STFT frames per 0.96 s window
PATCH_HOP = 48


class LogMelEmbedder(Embedder):
    """Log-mel and MFCC statistics per window; deterministic and dependency-free beyond librosa."""

    def __init__(self) -> None:
        self._mel_basis = mel_basis(n_mels=N_MELS, fmin=125.0, fmax=7500.0)
        self.info = EmbedderInfo(
            name="logmel",
            version="2",
            sample_rate=SAMPLE_RATE,
            dim=2 * N_MELS + 2 * N_MFCC,
            window_s=PATCH * STFT_HOP / SAMPLE_RATE,
            hop_s=PATCH_HOP * STFT_HOP / SAMPLE_RATE,
            weights_sha256=None,
        )

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """[n_stft_frames, 64] log mel energies ``log(1 + E / 1e-6)`` of a 16 kHz waveform.

        The log is taken relative to the floor, so silence maps to 0 and the features carry
        no large constant offset that would swamp cosine similarity.
        """
        energies = mel_energies(waveform, self._mel_basis, window_frames=PATCH, hop_frames=PATCH_HOP)
        return np.log1p(energies / LOG_OFFSET).astype(np.float32)

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logmel = self.log_mel(waveform)
        mfcc = scipy.fft.dct(logmel, type=2, norm="ortho", axis=1)[:, :N_MFCC].astype(np.float32)
        feats = np.concatenate([logmel, mfcc], axis=1)  # [n, 84]
        n_windows = 1 + (feats.shape[0] - PATCH) // PATCH_HOP
        windows = np.lib.stride_tricks.sliding_window_view(feats, PATCH, axis=0)[::PATCH_HOP][:n_windows]
        # windows: [T, 84, PATCH]
        mean = windows.mean(axis=2)
        std = windows.std(axis=2)
        out = np.concatenate([mean[:, :N_MELS], std[:, :N_MELS], mean[:, N_MELS:], std[:, N_MELS:]], axis=1)
        out = np.ascontiguousarray(out, dtype=np.float32)
        return out, self.frame_times(out.shape[0])

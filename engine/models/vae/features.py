"""Inputs of the GLU-ConvVAE as numpy: the log-mel front end, its windows and normalisation.

* :class:`MelConfig` -- the spectrogram (25 ms STFT window, 10 ms hop, ``n_mels`` bands,
  125-7500 Hz) and the window the model sees (``frames`` STFT frames, ``hop_frames`` apart).
* :func:`log_mel` -- ``[n_stft_frames, n_mels]`` natural-log mel energies of a waveform, padded
  like the ``logmel`` embedder so that a short clip gives one whole window and no tail is dropped.
* :func:`windows` -- the ``[T, n_mels, frames]`` windows of a log-mel, one per hop.
* :class:`Normalizer` -- per-band mean/std fitted on training clips; stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from audiosim.engine.audio import melspec
from audiosim.engine.audio.melspec import LOG_OFFSET, STFT_HOP, STFT_WIN, mel_energies
from audiosim.errors import InvalidOptionError, TrainingError

# A frame whose every band is within this of log(LOG_OFFSET) is digital silence (zero padding).
SILENT_MARGIN = 1e-3


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end and model window. ``frames`` and ``n_mels`` must suit the model's strides."""

    sample_rate: int = 16000
    n_mels: int = 64
    frames: int = 96
    hop_frames: int = 48
    fmin: float = 125.0
    fmax: float = 7500.0

    def __post_init__(self) -> None:
        if self.sample_rate != 16000:
            raise InvalidOptionError("the VAE front end works at 16 kHz (sample_rate=16000)")
        if self.n_mels < 8 or self.frames < 8 or not 1 <= self.hop_frames <= self.frames:
            raise InvalidOptionError(f"bad mel configuration: n_mels={self.n_mels}, frames={self.frames}, "
                                f"hop_frames={self.hop_frames} (need n_mels, frames >= 8 and 1 <= hop_frames <= frames)")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise InvalidOptionError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2}, got {self.fmin}, {self.fmax}")

    @property
    def window_s(self) -> float:
        return self.frames * STFT_HOP / self.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_frames * STFT_HOP / self.sample_rate

    @property
    def min_samples(self) -> int:
        """Samples spanned by one model window."""
        return STFT_WIN + (self.frames - 1) * STFT_HOP

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def mel_basis(cfg: MelConfig) -> np.ndarray:
    """[n_mels, N_FFT // 2 + 1] HTK mel filterbank of ``cfg`` (:func:`audiosim.engine.audio.melspec.mel_basis`)."""

    return melspec.mel_basis(n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, sample_rate=cfg.sample_rate)


def log_mel(waveform: np.ndarray, cfg: MelConfig, basis: np.ndarray | None = None) -> np.ndarray:
    """[n_frames, n_mels] float32 natural-log mel energies (no centring).

    The waveform is zero-padded to at least one window and then to a whole number of window
    hops, so ``windows`` covers every sample and a sub-window clip yields exactly one window.
    """

    basis = mel_basis(cfg) if basis is None else basis
    energies = mel_energies(waveform, basis, window_frames=cfg.frames, hop_frames=cfg.hop_frames)
    return np.log(energies + LOG_OFFSET).astype(np.float32)


def n_windows(n_frames: int, cfg: MelConfig) -> int:
    return 1 + max(n_frames - cfg.frames, 0) // cfg.hop_frames


def windows(logmel: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """[T, n_mels, frames] windows (time last) starting every ``hop_frames`` frames."""
    lm = logmel
    if lm.shape[0] < cfg.frames:  # only for log-mels not made by log_mel(): pad with the silence floor
        lm = np.pad(lm, ((0, cfg.frames - lm.shape[0]), (0, 0)), constant_values=np.log(LOG_OFFSET))
    t = n_windows(lm.shape[0], cfg)
    view = np.lib.stride_tricks.sliding_window_view(lm, cfg.frames, axis=0)[::cfg.hop_frames][:t]
    return np.ascontiguousarray(view, dtype=np.float32)  # sliding_window_view puts the window axis last


def silent_frames(logmel: np.ndarray) -> np.ndarray:
    """Boolean [n_frames]: frames that are digital silence (every band at the log floor)."""
    return (logmel.max(axis=1) <= np.log(LOG_OFFSET) + SILENT_MARGIN)


@dataclass(frozen=True)
class Normalizer:
    """Per-band standardisation fitted on training log-mels (silent frames excluded)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, logmels: Sequence[np.ndarray]) -> "Normalizer":
        if not logmels:
            raise TrainingError("cannot fit a normalizer on zero clips")
        n_mels = logmels[0].shape[1]
        s = np.zeros(n_mels)
        s2 = np.zeros(n_mels)
        n = 0
        for lm in logmels:
            keep = lm[~silent_frames(lm)].astype(np.float64)
            s += keep.sum(axis=0)
            s2 += (keep ** 2).sum(axis=0)
            n += keep.shape[0]
        if n == 0:  # only silence: fall back to every frame
            allf = np.concatenate(logmels).astype(np.float64)
            s, s2, n = allf.sum(axis=0), (allf ** 2).sum(axis=0), allf.shape[0]
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
        std = np.maximum(std, 1e-3)
        return cls(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardise windows ``[..., n_mels, frames]`` band by band."""
        m = np.asarray(self.mean, dtype=np.float32)[:, None]
        s = np.asarray(self.std, dtype=np.float32)[:, None]
        return ((x - m) / s).astype(np.float32)

    def invert(self, x: np.ndarray) -> np.ndarray:
        m = np.asarray(self.mean, dtype=np.float32)[:, None]
        s = np.asarray(self.std, dtype=np.float32)[:, None]
        return (x * s + m).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]))

"""A log-mel front end described by its parameters, for models that state theirs (ONNX sidecars).

:class:`LogMelParams` holds every choice that changes the numbers: STFT size, window and hop
(samples), centring, power, the mel filterbank (HTK or Slaney scale, Slaney area norm or none,
``fmin``/``fmax``) and the log (natural, base 10, decibels ``10 log10``, or none) with its
offset. :func:`log_mel` turns a batch of equal-length windows into ``[n, frames, n_mels]``
float32 features with a periodic Hann window, as ``torch.stft(..., window=hann_window(win,
periodic=True), pad_mode="constant")`` would, so a model trained on torch features sees the
same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from audiosim.errors import InvalidOptionError

LOGS = ("ln", "log10", "db", "none")
MEL_SCALES = ("htk", "slaney")


@dataclass(frozen=True)
class LogMelParams:
    """The parameters of one log-mel front end (all sample counts at ``sample_rate``)."""

    sample_rate: int
    n_fft: int = 512
    win_length: int | None = None  # None: n_fft
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    mel_scale: str = "htk"
    norm: str | None = None  # None or "slaney"
    power: float = 2.0
    log: str = "ln"
    log_offset: float = 1e-6
    center: bool = False

    @classmethod
    def from_dict(cls, d: dict, *, sample_rate: int, source: str) -> "LogMelParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"type"})
        if unknown:
            raise InvalidOptionError(f"{source}: the logmel front end takes no {', '.join(unknown)}; "
                                     f"its parameters are {', '.join(sorted(known))}")
        p = cls(**{**{k: v for k, v in d.items() if k != "type"}, "sample_rate": int(d.get("sample_rate", sample_rate))})
        p.check(source=source)
        return p

    @property
    def window(self) -> int:
        return int(self.win_length or self.n_fft)

    def check(self, *, source: str) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if self.n_fft < 2 or not (0 < self.window <= self.n_fft):
            problems.append("need n_fft >= 2 and 0 < win_length <= n_fft")
        if self.hop_length < 1:
            problems.append("hop_length must be >= 1")
        if self.n_mels < 1:
            problems.append("n_mels must be >= 1")
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            problems.append("need 0 <= fmin < fmax <= sample_rate / 2")
        if self.mel_scale not in MEL_SCALES:
            problems.append(f"mel_scale must be one of {', '.join(MEL_SCALES)}")
        if self.norm not in (None, "slaney"):
            problems.append("norm must be null or \"slaney\"")
        if self.power not in (1.0, 2.0):
            problems.append("power must be 1 (magnitude) or 2 (power)")
        if self.log not in LOGS:
            problems.append(f"log must be one of {', '.join(LOGS)}")
        if self.log != "none" and not self.log_offset > 0:
            problems.append("log_offset must be positive")
        if problems:
            raise InvalidOptionError(f"{source}: invalid logmel front end: " + "; ".join(problems))

    def n_frames(self, n_samples: int) -> int:
        """STFT frames of a window of ``n_samples``."""
        n = n_samples + (2 * (self.n_fft // 2) if self.center else 0)
        return 1 + max(0, n - self.n_fft) // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def mel_filterbank(p: LogMelParams) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 mel filters (librosa)."""
    import librosa

    return librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax,
                               htk=p.mel_scale == "htk", norm=p.norm).astype(np.float32)


def log_mel(windows: np.ndarray, p: LogMelParams, basis: np.ndarray | None = None) -> np.ndarray:
    """``[n, frames, n_mels]`` float32 log-mel features of ``windows`` ``[n, samples]``."""
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError("log_mel takes [n, samples]")
    if basis is None:
        basis = mel_filterbank(p)
    if p.center:
        half = p.n_fft // 2
        x = np.pad(x, ((0, 0), (half, half)))
    if x.shape[1] < p.n_fft:
        x = np.pad(x, ((0, 0), (0, p.n_fft - x.shape[1])))
    win = np.zeros(p.n_fft, dtype=np.float32)
    left = (p.n_fft - p.window) // 2
    win[left:left + p.window] = np.hanning(p.window + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft, axis=1)[:, ::p.hop_length] * win
    spec = np.abs(np.fft.rfft(frames, n=p.n_fft, axis=2)).astype(np.float32)
    if p.power == 2.0:
        spec = spec ** 2
    mel = spec @ basis.T
    if p.log == "ln":
        mel = np.log(mel + p.log_offset)
    elif p.log == "log10":
        mel = np.log10(mel + p.log_offset)
    elif p.log == "db":
        mel = 10.0 * np.log10(mel + p.log_offset)
    return np.ascontiguousarray(mel, dtype=np.float32)

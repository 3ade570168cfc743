"""PANNs Cnn14 in torch, laid out exactly as the official checkpoints' ``model`` entry.

Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks" (2020), Zenodo record
3987831. Our own implementation of the published architecture; ``state_dict()`` has the same
keys and shapes as ``Cnn14_mAP=0.431.pth`` / ``Cnn14_16k_mAP=0.438.pth`` (which were saved
with the torchlibrosa front end), so those files load with ``strict=True``:

* ``spectrogram_extractor.stft.conv_real.weight`` / ``conv_imag.weight`` -- [n_fft/2+1, 1, n_fft]
  Conv1d kernels holding the Hann-windowed DFT (a centred, reflect-padded STFT, power 2);
* ``logmel_extractor.melW`` -- [n_fft/2+1, 64] Slaney mel filters (librosa), then
  ``10 log10(max(mel, 1e-10))`` dB with ref 1.0 and no top_db clipping;
* ``bn0`` over the 64 mel bands, ``conv_block1..6`` (64..2048 channels; each two 3x3 convs
  without bias, each followed by BatchNorm and ReLU, then 2x2 average pooling, 1x1 for block 6),
  mean over frequency, max + mean over time, ``fc1`` (2048, ReLU: the embedding) and
  ``fc_audioset`` (527 sigmoid outputs).

This module imports torch at the top; the embedder imports it only when constructed.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiosim.errors import WeightsFormatError

EMBEDDING_SIZE = 2048
CLASSES_NUM = 527
AMIN = 1e-10
CHANNELS = (64, 128, 256, 512, 1024, 2048)
STFT_KEY = "spectrogram_extractor.stft.conv_real.weight"


@dataclass(frozen=True)
class Cnn14Config:
    """Front-end settings of one published Cnn14 checkpoint."""

    variant: str
    sample_rate: int
    window_size: int  # n_fft = STFT window
    hop_size: int
    mel_bins: int
    fmin: float
    fmax: float
    classes_num: int = CLASSES_NUM

    @property
    def min_samples(self) -> int:
        """Shortest input the network accepts: 32 STFT frames survive the five 2x2 poolings."""
        return 31 * self.hop_size


VARIANTS = {
    "Cnn14": Cnn14Config("Cnn14", sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000),
    "Cnn14_16k": Cnn14Config("Cnn14_16k", sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50,
                             fmax=8000),
}


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


class STFT(nn.Module):
    """Centred STFT as two strided Conv1d layers (real and imaginary parts), reflect padding."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        bins = n_fft // 2 + 1
        phase = 2.0 * np.pi * (np.outer(np.arange(bins), np.arange(n_fft)) % n_fft) / n_fft
        window = periodic_hann(n_fft)
        self.conv_real = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy((np.cos(phase) * window)[:, None, :]))
            self.conv_imag.weight.copy_(torch.from_numpy((-np.sin(phase) * window)[:, None, :]))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L] -> real, imag: [B, 1, frames, n_fft/2+1] with frames = 1 + L // hop."""
        x = F.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x).transpose(1, 2)[:, None], self.conv_imag(x).transpose(1, 2)[:, None]


class Spectrogram(nn.Module):
    """Power spectrogram |STFT|^2, [B, 1, frames, bins]."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = STFT(n_fft, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(x)
        return real ** 2 + imag ** 2


class LogmelFilterBank(nn.Module):
    """Mel projection and power-to-dB (ref 1.0, amin 1e-10, no top_db)."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        import librosa

        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.melW = nn.Parameter(torch.from_numpy(np.ascontiguousarray(mel.T, dtype=np.float32)), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool > 1 else x


class Cnn14(nn.Module):
    """Cnn14 (inference): waveform [B, L] -> (embedding [B, 2048], clipwise [B, 527])."""

    def __init__(self, config: Cnn14Config) -> None:
        super().__init__()
        self.config = config
        self.spectrogram_extractor = Spectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogmelFilterBank(config.sample_rate, config.window_size, config.mel_bins,
                                                 config.fmin, config.fmax)
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        ins = (1,) + CHANNELS[:-1]
        for i, (cin, cout) in enumerate(zip(ins, CHANNELS), 1):
            setattr(self, f"conv_block{i}", ConvBlock(cin, cout))
        self.fc1 = nn.Linear(CHANNELS[-1], EMBEDDING_SIZE, bias=True)
        self.fc_audioset = nn.Linear(EMBEDDING_SIZE, config.classes_num, bias=True)
        self.eval()

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, 1, frames, mel_bins] log-mel in dB (the input of bn0)."""
        return self.logmel_extractor(self.spectrogram_extractor(waveform))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel(waveform)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=2 if i < 6 else 1)
        x = torch.mean(x, dim=3)
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, torch.sigmoid(self.fc_audioset(embedding))


def _numpy_safe_globals() -> list:
    """numpy scalar/dtype reconstructors (data, not code) that old training scripts pickled into
    checkpoints, under both their numpy>=2 and numpy<2 import names."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtype_classes = [type(np.dtype(t)) for t in ("int64", "int32", "float64", "float32")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtype_classes]


def _reason(e: Exception) -> str:
    """The informative part of a torch.load error (for weights-only refusals, the unpickler's own reason
    rather than torch's advice to disable the safety check)."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if m:
        return "not plain tensors and data: " + m.group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of an official checkpoint (a bare state dict is accepted too).

    Only tensors and plain data are unpickled (``weights_only=True``); a file that needs more
    is refused rather than executed.
    """
    path = Path(path)
    hint = "the file may be truncated or not a PANNs checkpoint: download it again or pass the right --weights"
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only" not in str(e).lower():
                raise
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, AttributeError,
            IndexError) as e:
        raise WeightsFormatError(f"{path} cannot be read as a PyTorch checkpoint ({_reason(e)}); {hint}") from e
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFormatError(f"{path} holds no PANNs state dict (expected a dict with a 'model' entry of tensors)")
    return state


def variant_of(state: dict[str, torch.Tensor]) -> str | None:
    """The published variant whose STFT size matches the state dict, or None."""
    w = state.get(STFT_KEY)
    if w is None or w.ndim != 3:
        return None
    for name, cfg in VARIANTS.items():
        if tuple(w.shape) == (cfg.window_size // 2 + 1, 1, cfg.window_size):
            return name
    return None


def layout_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state`` against ``model`` (empty when they match)."""
    want = model.state_dict()
    problems = [f"missing {k}" for k in want if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in want]
    for k, v in want.items():
        if k not in state:
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            problems.append(f"{k}: shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
        elif state[k].dtype != v.dtype:
            problems.append(f"{k}: dtype {state[k].dtype}, expected {v.dtype}")
    return problems


def load_cnn14(path: str | Path, *, variant: str | None = None) -> Cnn14:
    """Build Cnn14 for the checkpoint at ``path`` and load it with ``strict=True``.

    ``variant`` (``"Cnn14"`` 32 kHz or ``"Cnn14_16k"``) defaults to the one the file was made for.
    """
    if variant is not None and variant not in VARIANTS:
        raise WeightsFormatError(f"unknown PANNs variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    state = read_checkpoint(path)
    found = variant_of(state)
    if variant is None:
        variant = found or "Cnn14"
    elif found is not None and found != variant:
        raise WeightsFormatError(
            f"{path} is a {found} checkpoint ({VARIANTS[found].sample_rate} Hz) but variant {variant!r} was requested; "
            f"pass variant={found!r} or the {variant} weights"
        )
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = Cnn14(VARIANTS[variant])
    problems = layout_problems(model, state)
    if problems:
        raise WeightsFormatError(
            f"{path} does not match the official {variant} layout: " + "; ".join(problems[:6])
            + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else "")
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise WeightsFormatError(f"{path}: loading the {variant} weights failed: {e}") from e
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise WeightsFormatError(f"{path}: {k} holds NaN/infinite values")
    return model.eval()

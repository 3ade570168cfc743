"""The GLU convolutional VAE (torch).

Encoder: ``len(channels)`` blocks of [Conv2d 3x3 stride 2 emitting 2C channels -> GLU over the
channel axis (one half gates the other through a sigmoid) -> BatchNorm2d(C)], then a dense
bottleneck to the latent mean ``mu_z`` and log-variance ``logvar_z``; reparameterisation;
a decoder mirroring the encoder with transposed-conv GLU blocks; and two 3x3 heads giving the
per-pixel Gaussian likelihood mean ``mu_x`` and log-variance ``logvar_x``.

``bottleneck="flatten"`` (the thesis) feeds the flattened last feature map to the dense layers;
``bottleneck="timepool"`` first pools it over time (mean and max), so the latent describes what
a window sounds like rather than where in the window things happen.

Loss (per example, averaged over the batch): Gaussian negative log-likelihood summed over
pixels, ``0.5 * (log 2pi + logvar_x + (x - mu_x)^2 / exp(logvar_x))``, plus ``beta`` times the
KL divergence to N(0, I). Both log-variances are bounded (``logvar_x`` softly through a
scaled sigmoid, ``logvar_z`` by clamping) so the loss stays finite.

This module imports torch at the top: import it only where torch is needed (the ``vae``
embedder and the trainer import it inside their functions).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from audiosim.errors import InvalidOptionError, WeightsFormatError
from audiosim.files import atomic_path

BOTTLENECKS = ("flatten", "timepool")


@dataclass(frozen=True)
class VAEConfig:
    n_mels: int = 64
    frames: int = 96
    channels: tuple[int, ...] = (32, 64, 128, 256)
    latent_dim: int = 64
    bottleneck: str = "flatten"
    x_logvar_min: float = -6.0
    x_logvar_max: float = 4.0
    z_logvar_min: float = -12.0
    z_logvar_max: float = 8.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        step = 2 ** len(self.channels)
        if not self.channels or min(self.channels) < 1:
            raise InvalidOptionError(f"channels must be positive, got {self.channels}")
        if self.n_mels % step or self.frames % step:
            raise InvalidOptionError(f"n_mels ({self.n_mels}) and frames ({self.frames}) must be multiples of {step} "
                                f"for {len(self.channels)} stride-2 blocks")
        if self.latent_dim < 1:
            raise InvalidOptionError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.bottleneck not in BOTTLENECKS:
            raise InvalidOptionError(f"bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        if not self.x_logvar_min < self.x_logvar_max or not self.z_logvar_min < self.z_logvar_max:
            raise InvalidOptionError("log-variance bounds must satisfy min < max")

    @property
    def bottom_shape(self) -> tuple[int, int, int]:
        step = 2 ** len(self.channels)
        return self.channels[-1], self.n_mels // step, self.frames // step

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class GLUBlock(nn.Module):
    """(Transposed) conv 3x3 stride 2 to 2C channels -> GLU over channels -> BatchNorm2d(C)."""

    def __init__(self, c_in: int, c_out: int, *, transpose: bool = False) -> None:
        super().__init__()
        if transpose:
            self.conv = nn.ConvTranspose2d(c_in, 2 * c_out, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(c_in, 2 * c_out, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.glu(self.conv(x), dim=1))


class GLUConvVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.encoder = nn.ModuleList(GLUBlock(c_in, c_out) for c_in, c_out in zip((1,) + ch[:-1], ch))
        c, f, t = cfg.bottom_shape
        flat = c * f * t if cfg.bottleneck == "flatten" else 2 * c * f
        self.to_mu = nn.Linear(flat, cfg.latent_dim)
        self.to_logvar = nn.Linear(flat, cfg.latent_dim)
        self.from_z = nn.Linear(cfg.latent_dim, c * f * t)
        rev = ch[::-1]
        self.decoder = nn.ModuleList(
            GLUBlock(c_in, c_out, transpose=True) for c_in, c_out in zip(rev, rev[1:] + (ch[0],))
        )
        self.head_mu = nn.Conv2d(ch[0], 1, 3, padding=1)
        self.head_logvar = nn.Conv2d(ch[0], 1, 3, padding=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder block's output for input ``[B, 1, n_mels, frames]``."""
        out = []
        for block in self.encoder:
            x = block(x)
            out.append(x)
        return out

    def bottleneck_input(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.bottleneck == "flatten":
            return h.flatten(1)
        return torch.cat([h.mean(dim=3), h.amax(dim=3)], dim=1).flatten(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.bottleneck_input(self.features(x)[-1])
        logvar = self.to_logvar(h).clamp(self.cfg.z_logvar_min, self.cfg.z_logvar_max)
        return self.to_mu(h), logvar

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.from_z(z).view(z.shape[0], *self.cfg.bottom_shape)
        for block in self.decoder:
            h = block(h)
        lo, hi = self.cfg.x_logvar_min, self.cfg.x_logvar_max
        return self.head_mu(h), lo + (hi - lo) * torch.sigmoid(self.head_logvar(h))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor):
        mu_z, logvar_z = self.encode(x)
        z = self.reparameterize(mu_z, logvar_z) if self.training else mu_z
        mu_x, logvar_x = self.decode(z)
        return mu_x, logvar_x, mu_z, logvar_z


@dataclass(frozen=True)
class LossTerms:
    """Batch means per example: ``total = nll + beta * kl``."""

    total: torch.Tensor
    nll: torch.Tensor
    kl: torch.Tensor


def gaussian_nll(x: torch.Tensor, mu_x: torch.Tensor, logvar_x: torch.Tensor) -> torch.Tensor:
    """Per-example negative log-likelihood of ``x`` under N(mu_x, exp(logvar_x)), summed over pixels."""
    per_pixel = 0.5 * (math.log(2 * math.pi) + logvar_x + (x - mu_x) ** 2 * torch.exp(-logvar_x))
    return per_pixel.flatten(1).sum(dim=1)


def kl_standard_normal(mu_z: torch.Tensor, logvar_z: torch.Tensor) -> torch.Tensor:
    """Per-example KL(N(mu_z, exp(logvar_z)) || N(0, I))."""
    return 0.5 * (mu_z ** 2 + torch.exp(logvar_z) - 1.0 - logvar_z).sum(dim=1)


def vae_loss(x: torch.Tensor, outputs, beta: float) -> LossTerms:
    mu_x, logvar_x, mu_z, logvar_z = outputs
    nll = gaussian_nll(x, mu_x, logvar_x).mean()
    kl = kl_standard_normal(mu_z, logvar_z).mean()
    return LossTerms(total=nll + beta * kl, nll=nll, kl=kl)


def beta_at(step_epoch: float, *, beta: float, warmup_epochs: float) -> float:
    """Linear beta warm-up: 0 at the start, ``beta`` from ``warmup_epochs`` on (constant if 0)."""
    if warmup_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, max(step_epoch, 0.0) / warmup_epochs)


# ---------------------------------------------------------------------------------------------
# Checkpoints

CHECKPOINT_FORMAT = "audiosim-glu-conv-vae"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, model: GLUConvVAE, *, mel: dict, norm: dict, features: str = "mu",
                    extra: dict | None = None) -> None:
    """Weights + model config + mel front end + normalisation in one ``torch.save`` file (atomic).

    ``features`` is what the ``vae`` embedder returns per window by default (see its module).
    """

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.cfg.to_dict(),
        "mel": dict(mel),
        "norm": {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]},
        "features": str(features),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_path(p) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path) -> tuple[GLUConvVAE, dict]:
    """The model (eval mode, CPU) and the payload (config, mel, norm, extra)."""

    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle/zip/runtime errors for foreign files
        raise WeightsFormatError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: {e}); "
                                 "train one with `audiosim vae train`") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise WeightsFormatError(f"{path} is not an audiosim VAE checkpoint; train one with `audiosim vae train`")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise WeightsFormatError(f"{path} was written by a newer audiosim (checkpoint version {payload['version']})")
    model = GLUConvVAE(VAEConfig.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise WeightsFormatError(f"{path}: weights do not match the stored configuration: {e}") from e
    model.eval()
    return model, payload

"""The detectors' torch networks (imported only when a trained detector fits, scores or loads)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _dense_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU()]


class DcaseAE(nn.Module):
    """The DCASE 2020 Task 2 baseline: 640 -> (Dense 128 + BN + ReLU) x4 -> 8 (+BN+ReLU) -> x4 -> 640."""

    def __init__(self, dim: int = 640, hidden: int = 128, bottleneck: int = 8, depth: int = 4) -> None:
        super().__init__()
        enc = _dense_bn(dim, hidden) + [m for _ in range(depth - 1) for m in _dense_bn(hidden, hidden)]
        dec = _dense_bn(bottleneck, hidden) + [m for _ in range(depth - 1) for m in _dense_bn(hidden, hidden)]
        self.net = nn.Sequential(*enc, *_dense_bn(hidden, bottleneck), *dec, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvAE(nn.Module):
    """A convolutional AE on [1, 128, 32] log-mel crops: 3 strided convs, a dense bottleneck, mirrored."""

    def __init__(self, bands: int = 128, frames: int = 32, latent: int = 32, width: int = 16) -> None:
        super().__init__()
        c = (width, 2 * width, 4 * width)
        self.shape = (c[2], bands // 8, frames // 8)
        flat = c[2] * (bands // 8) * (frames // 8)
        self.enc = nn.Sequential(
            nn.Conv2d(1, c[0], 3, 2, 1), nn.BatchNorm2d(c[0]), nn.ReLU(),
            nn.Conv2d(c[0], c[1], 3, 2, 1), nn.BatchNorm2d(c[1]), nn.ReLU(),
            nn.Conv2d(c[1], c[2], 3, 2, 1), nn.BatchNorm2d(c[2]), nn.ReLU(),
            nn.Flatten(), nn.Linear(flat, latent))
        self.fc = nn.Linear(latent, flat)
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(c[2], c[1], 4, 2, 1), nn.BatchNorm2d(c[1]), nn.ReLU(),
            nn.ConvTranspose2d(c[1], c[0], 4, 2, 1), nn.BatchNorm2d(c[0]), nn.ReLU(),
            nn.ConvTranspose2d(c[0], 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(F.relu(self.fc(self.enc(x))).view(-1, *self.shape))


class GammaVAE(nn.Module):
    """Dense VAE with a Gamma latent: (Linear 128 + BN + ReLU) x4 -> 8 shape and 8 scale (softplus), mirrored."""

    def __init__(self, dim: int = 640, hidden: int = 128, latent: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.enc = nn.Sequential(*_dense_bn(dim, hidden), *[m for _ in range(depth - 1) for m in _dense_bn(hidden, hidden)])
        self.shape_head = nn.Linear(hidden, latent)
        self.scale_head = nn.Linear(hidden, latent)
        self.dec = nn.Sequential(*_dense_bn(latent, hidden), *[m for _ in range(depth - 1) for m in _dense_bn(hidden, hidden)],
                                 nn.Linear(hidden, dim))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return F.softplus(self.shape_head(h)) + 1e-3, F.softplus(self.scale_head(h)) + 1e-3

    def forward(self, x: torch.Tensor):
        shape, scale = self.posterior(x)
        q = torch.distributions.Gamma(shape, 1.0 / scale)
        z = q.rsample() if self.training else shape * scale
        return self.dec(z), q, shape * scale


def _inverted_residual(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
    hidden = cin * expand
    layers: list[nn.Module] = [] if expand == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
    layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
               nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return _Residual(nn.Sequential(*layers), stride == 1 and cin == cout)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, skip: bool) -> None:
        super().__init__()
        self.body, self.skip = body, skip

    def forward(self, x):
        return x + self.body(x) if self.skip else self.body(x)


class MobileNetV2Small(nn.Module):
    """A small MobileNetV2-style feature extractor (inverted residuals, depthwise convs) -> [B, emb]."""

    def __init__(self, width: int = 16, emb: int = 128) -> None:
        super().__init__()
        w = width
        spec = [(w, w, 1, 1), (w, int(1.5 * w), 2, 4), (int(1.5 * w), int(1.5 * w), 1, 4),
                (int(1.5 * w), 2 * w, 2, 4), (2 * w, 2 * w, 1, 4), (2 * w, 4 * w, 2, 4)]
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU6(),
            *[_inverted_residual(*s) for s in spec],
            nn.Conv2d(4 * w, emb, 1, bias=False), nn.BatchNorm2d(emb), nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class IdClassifier(nn.Module):
    def __init__(self, n_classes: int, width: int = 16, emb: int = 128) -> None:
        super().__init__()
        self.backbone = MobileNetV2Small(width, emb)
        self.head = nn.Linear(emb, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class L2SoftmaxNet(nn.Module):
    """Backbone features, L2-normalised and scaled by ``alpha``, into a softmax head (L2-softmax)."""

    def __init__(self, n_classes: int, width: int = 16, emb: int = 128, alpha: float = 16.0) -> None:
        super().__init__()
        self.backbone = MobileNetV2Small(width, emb)
        self.head = nn.Linear(emb, n_classes)
        self.alpha = alpha

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.alpha * self.embed(x))

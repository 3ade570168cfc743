"""Trained detectors on the DCASE log-mel: ``ae``, ``conv_ae``, ``gamma_vae``, ``id_classifier``, ``metric``.

* ``ae`` -- the DCASE 2020 Task 2 baseline exactly: 5 stacked frames (640 inputs), Dense 128 x4 -> 8 ->
  Dense 128 x4 -> 640 with BatchNorm + ReLU after each hidden Dense, MSE, Adam 1e-3, batch 512, 100 epochs
  (``epochs=``), no input normalisation; frame score = the vector's mean squared reconstruction error.
* ``conv_ae`` -- a convolutional AE on 128 x 32 crops (hop 4 frames) standardised per band; crop score = MSE.
* ``gamma_vae`` -- (Linear 128 + BN + ReLU) x4 to 8 Gamma shape/scale pairs (softplus), mirrored decoder
  to 640; loss = (squared error + beta x KL(q || Gamma(prior_shape, prior_rate))) / 640; scored on the
  latent means by reconstruction MSE (``score=mse``) or Mahalanobis distance (``score=mahalanobis``).
* ``id_classifier`` -- a MobileNetV2-style CNN on crops that learns the machine IDs/sections of one machine
  type; crop score = -log p(own ID).
* ``metric`` -- L2-softmax: the same CNN's features, L2-normalised and scaled, into a softmax over the
  IDs/sections; then LOF (``scorer=lof``) or Mahalanobis (``scorer=mahalanobis``) fitted on each ID's
  normal crop features.

Batches come from one tensor on the device (features computed once, cached, moved once); clip score =
mean of its frame/crop scores.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from audiosim.anomaly.detectors.base import Detector
from audiosim.anomaly.detectors.features import patches, stack_frames
from audiosim.anomaly.scorers import make_scorer
from audiosim.errors import AnomalyModelError, TrainingError


def _train(net, X, y, loss_fn, *, epochs: int, batch: int, lr: float, device: str, seed: int) -> tuple[list[float], int, float]:
    """Adam on (X, y) for ``epochs``; (mean training loss per epoch, optimizer steps, seconds)."""
    import time

    import torch

    net.to(device).train()
    xt = torch.as_tensor(X).to(device, non_blocking=True)
    yt = torch.as_tensor(y).to(device) if y is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = xt.shape[0]
    history = []
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(device)
        total, seen = 0.0, 0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            loss = loss_fn(net, xt[idx], yt[idx] if yt is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        if not math.isfinite(total):
            raise TrainingError("training diverged (non-finite loss); lower the learning rate (lr=...)")
        history.append(total / max(seen, 1))
    _recalibrate_batchnorm(net, xt, batch)
    net.eval()
    return history, steps, time.perf_counter() - t0


def _recalibrate_batchnorm(net, xt, batch: int) -> None:
    """Re-estimate BatchNorm statistics on the training data with the final weights (an exact average, not the
    running average over changing weights, which short trainings leave far from the truth)."""
    import torch

    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for i in range(0, xt.shape[0], max(batch, 2)):
            if xt[i:i + batch].shape[0] >= 2:
                net(xt[i:i + batch])
    for m, mom in zip(bns, saved):
        m.momentum = mom


def _batched(fn, X: np.ndarray, device: str, batch: int = 1024) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, X.shape[0], batch):
            out.append(fn(torch.as_tensor(X[i:i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _split(values: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(counts)[:-1])


def _net_arrays(net) -> dict[str, np.ndarray]:
    return {f"net/{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def _load_net(net, arrays: dict, device: str):
    import torch

    net.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net/")}, strict=True)
    return net.to(device).eval()


class _TorchDetector(Detector):
    """Shared: per-unit inputs (vectors or crops), optional normalisation, train/score/save the network."""

    normalise = True

    def _units(self, lm: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _build(self):
        raise NotImplementedError

    def _loss(self, net, xb, yb):
        raise NotImplementedError

    def _unit_scores(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _prepare(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        units = [self._units(lm) for lm in inputs]
        X = np.concatenate(units).astype(np.float32)
        if self.normalise:
            X = (X - self.mean_) / self.std_
        return X, [u.shape[0] for u in units]

    def _fit_norm(self, inputs: list[np.ndarray]) -> None:
        if not self.normalise:
            return
        frames = np.concatenate(inputs)
        self.mean_ = frames.mean(axis=0).astype(np.float32)
        self.std_ = np.maximum(frames.std(axis=0), 1e-3).astype(np.float32)
        self.mean_, self.std_ = self._norm_shape(self.mean_), self._norm_shape(self.std_)

    def _norm_shape(self, v: np.ndarray) -> np.ndarray:
        return v

    def _targets(self, labels, counts) -> np.ndarray | None:
        if labels is None or not self.needs_labels:
            return None
        code = {c: i for i, c in enumerate(self.classes_)}
        return np.repeat(np.array([code[lab] for lab in labels], dtype=np.int64), counts)

    def _fit(self, inputs, labels) -> None:
        self._fit_norm(inputs)
        X, counts = self._prepare(inputs)
        y = self._targets(labels, counts)
        self.net_ = self._build()
        o = self.options
        self.history_, self.train_steps_, self.train_seconds_ = _train(
            self.net_, X, y, self._loss, epochs=o["epochs"], batch=o["batch"], lr=o["lr"], device=self.device, seed=o["seed"])
        self._after_fit(X, y, counts)

    def _after_fit(self, X, y, counts) -> None:
        pass

    def _frame_scores(self, inputs, labels):
        X, counts = self._prepare(inputs)
        return _split(self._unit_scores(X, self._targets(labels, counts)), counts)

    def _val_loss(self, inputs, labels) -> float:
        X, counts = self._prepare(inputs)
        y = self._targets(labels, counts)
        import torch

        with torch.inference_mode():
            total = 0.0
            for i in range(0, X.shape[0], 1024):
                xb = torch.as_tensor(X[i:i + 1024]).to(self.device)
                yb = torch.as_tensor(y[i:i + 1024]).to(self.device) if y is not None else None
                total += float(self._loss(self.net_, xb, yb)) * xb.shape[0]
        return total / X.shape[0]

    def _state(self):
        arrays = _net_arrays(self.net_)
        if self.normalise:
            arrays.update(norm_mean=self.mean_, norm_std=self.std_)
        return {"n_classes": len(self.classes_)}, arrays

    def _restore(self, state, arrays) -> None:
        if self.normalise:
            self.mean_, self.std_ = arrays["norm_mean"].astype(np.float32), arrays["norm_std"].astype(np.float32)
        self.net_ = _load_net(self._build(), arrays, self.device)


class AEDetector(_TorchDetector):
    kind = "ae"
    defaults = {"epochs": 100, "batch": 512, "lr": 1e-3, "bottleneck": 8, "hidden": 128, "frames": 5}
    tunable = {"lr": [3e-4, 1e-3, 3e-3], "bottleneck": [4, 8, 16], "batch": [128, 256, 512]}
    normalise = False

    def _units(self, lm):
        return stack_frames(lm, self.options["frames"])

    def _build(self):
        from audiosim.anomaly.detectors.nets import DcaseAE

        return DcaseAE(dim=128 * self.options["frames"], hidden=self.options["hidden"], bottleneck=self.options["bottleneck"])

    def _loss(self, net, xb, yb):
        return ((net(xb) - xb) ** 2).mean()

    def _unit_scores(self, X, y):
        net = self.net_.to(self.device).eval()
        return _batched(lambda x: ((net(x) - x) ** 2).mean(dim=1), X, self.device)


class ConvAEDetector(_TorchDetector):
    kind = "conv_ae"
    defaults = {"epochs": 30, "batch": 64, "lr": 1e-3, "latent": 32, "width": 16, "frames": 32, "hop": 4}
    tunable = {"lr": [3e-4, 1e-3, 3e-3], "latent": [16, 32, 64], "width": [8, 16, 32]}

    def _check_options(self):
        if self.options["frames"] % 8 or self.options["frames"] < 8 or self.options["hop"] < 1:
            raise AnomalyModelError("conv_ae: frames must be a multiple of 8 (>= 8) and hop >= 1")

    def _units(self, lm):
        return patches(lm, self.options["frames"], self.options["hop"])[:, None]

    def _norm_shape(self, v):
        return v[None, None, :, None]  # per band, broadcast over [P, 1, bands, frames]

    def _build(self):
        from audiosim.anomaly.detectors.nets import ConvAE

        o = self.options
        return ConvAE(bands=128, frames=o["frames"], latent=o["latent"], width=o["width"])

    def _loss(self, net, xb, yb):
        return ((net(xb) - xb) ** 2).mean()

    def _unit_scores(self, X, y):
        net = self.net_.to(self.device).eval()
        return _batched(lambda x: ((net(x) - x) ** 2).mean(dim=(1, 2, 3)), X, self.device, batch=256)


class GammaVAEDetector(_TorchDetector):
    kind = "gamma_vae"
    defaults = {"epochs": 100, "batch": 512, "lr": 1e-3, "latent": 8, "beta": 1.0, "prior_shape": 1.0,
                "prior_rate": 1.0, "score": "mse", "frames": 5}
    choices = {"score": ("mse", "mahalanobis")}
    tunable = {"lr": [3e-4, 1e-3, 3e-3], "beta": [0.1, 0.5, 1.0], "latent": [4, 8, 16]}

    def _units(self, lm):
        return stack_frames(lm, self.options["frames"])

    def _fit_norm(self, inputs):
        X = np.concatenate([self._units(lm) for lm in inputs])
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.std_ = np.maximum(X.std(axis=0), 1e-3).astype(np.float32)

    def _build(self):
        from audiosim.anomaly.detectors.nets import GammaVAE

        return GammaVAE(dim=128 * self.options["frames"], latent=self.options["latent"])

    def _loss(self, net, xb, yb):
        import torch

        recon, q, _ = net(xb)
        prior = torch.distributions.Gamma(torch.full_like(q.concentration, self.options["prior_shape"]),
                                          torch.full_like(q.rate, self.options["prior_rate"]))
        kl = torch.distributions.kl_divergence(q, prior).sum(dim=1)
        return (((recon - xb) ** 2).sum(dim=1) + self.options["beta"] * kl).mean() / xb.shape[1]

    def _after_fit(self, X, y, counts):
        z = self._latents(X)
        self.z_mean_ = z.mean(axis=0)
        cov = np.cov(z, rowvar=False) + 1e-6 * np.eye(z.shape[1]) * max(float(np.trace(np.atleast_2d(np.cov(z, rowvar=False)))), 1e-6)
        self.z_prec_ = np.linalg.pinv(np.atleast_2d(cov))

    def _latents(self, X):
        net = self.net_.to(self.device).eval()
        return _batched(lambda x: net(x)[2], X, self.device).astype(np.float64)

    def _unit_scores(self, X, y):
        net = self.net_.to(self.device).eval()
        if self.options["score"] == "mse":
            return _batched(lambda x: ((net(x)[0] - x) ** 2).mean(dim=1), X, self.device)
        d = self._latents(X) - self.z_mean_
        return np.einsum("ij,jk,ik->i", d, self.z_prec_, d)

    def _state(self):
        state, arrays = super()._state()
        arrays.update(z_mean=self.z_mean_, z_prec=self.z_prec_)
        return state, arrays

    def _restore(self, state, arrays):
        super()._restore(state, arrays)
        self.z_mean_, self.z_prec_ = arrays["z_mean"], arrays["z_prec"]
        if self.z_prec_.shape != (self.options["latent"],) * 2:
            raise ValueError(f"latent precision has shape {self.z_prec_.shape}")


class _CropClassifier(_TorchDetector):
    needs_labels = True

    def _check_options(self):
        if self.options["frames"] < 16 or self.options["hop"] < 1:
            raise AnomalyModelError(f"{self.kind}: frames must be >= 16 and hop >= 1")

    def _units(self, lm):
        return patches(lm, self.options["frames"], self.options["hop"])[:, None]

    def _norm_shape(self, v):
        return v[None, None, :, None]

    def _loss(self, net, xb, yb):
        from torch.nn import functional as F

        return F.cross_entropy(net(xb), yb)


class IdClassifierDetector(_CropClassifier):
    kind = "id_classifier"
    defaults = {"epochs": 20, "batch": 64, "lr": 1e-3, "width": 16, "frames": 32, "hop": 4}
    tunable = {"lr": [3e-4, 1e-3, 3e-3], "width": [8, 16, 24], "batch": [32, 64, 128]}

    def _build(self):
        from audiosim.anomaly.detectors.nets import IdClassifier

        return IdClassifier(len(self.classes_), width=self.options["width"])

    def _unit_scores(self, X, y):
        import torch
        from torch.nn import functional as F

        net = self.net_.to(self.device).eval()
        logp = _batched(lambda x: F.log_softmax(net(x), dim=1), X, self.device, batch=256)
        return -logp[np.arange(len(y)), y]


class MetricDetector(_CropClassifier):
    kind = "metric"
    defaults = {"epochs": 20, "batch": 64, "lr": 1e-3, "width": 16, "alpha": 16.0, "frames": 32, "hop": 4,
                "scorer": "lof", "k": 10}
    choices = {"scorer": ("lof", "mahalanobis")}
    tunable = {"lr": [3e-4, 1e-3, 3e-3], "alpha": [8.0, 16.0, 32.0], "width": [8, 16, 24]}

    def _build(self):
        from audiosim.anomaly.detectors.nets import L2SoftmaxNet

        return L2SoftmaxNet(len(self.classes_), width=self.options["width"], alpha=self.options["alpha"])

    def _scorer_spec(self) -> str:
        if self.options["scorer"] == "lof":
            return f"lof:k={self.options['k']},metric=euclidean"
        return "mahalanobis:covariance=ledoitwolf"

    def _embed(self, X):
        net = self.net_.to(self.device).eval()
        return _batched(net.embed, X, self.device, batch=256).astype(np.float64)

    def _after_fit(self, X, y, counts):
        self._fit_scorers(self._embed(X), y)
        owner = np.repeat(np.arange(len(counts)), counts)
        self._train_units = {}
        for c, s in self.scorers_.items():
            self._train_units[c] = (owner[y == c], s.train_scores_)

    def _fit_scorers(self, E, y):
        self.train_emb_ = E.astype(np.float32)
        self.train_y_ = y
        self.scorers_ = {}
        for c in range(len(self.classes_)):
            if (y == c).sum() < 4:
                raise AnomalyModelError(f"metric: ID/section {self.classes_[c]} has only {(y == c).sum()} crops; "
                                        "give it more or longer normal clips")
            self.scorers_[c] = make_scorer(self._scorer_spec()).fit(E[y == c])

    def _train_clip_scores(self, inputs, labels):
        # held-out training scores of each crop (the scorers' own), averaged per clip
        n = len(inputs)
        sums, cnt = np.zeros(n), np.zeros(n)
        for owner, s in self._train_units.values():
            np.add.at(sums, owner, s)
            np.add.at(cnt, owner, 1)
        return sums / np.maximum(cnt, 1)

    def _unit_scores(self, X, y):
        E = self._embed(X)
        out = np.empty(len(y))
        for c in np.unique(y):
            out[y == c] = self.scorers_[int(c)].anomaly_score(E[y == c])
        return out

    def _state(self):
        state, arrays = super()._state()
        arrays.update(train_emb=self.train_emb_, train_y=self.train_y_)
        return state, arrays

    def _restore(self, state, arrays):
        super()._restore(state, arrays)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._fit_scorers(arrays["train_emb"].astype(np.float64), arrays["train_y"].astype(np.int64))

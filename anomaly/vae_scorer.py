"""The GLU-ConvVAE's reconstruction error as an anomaly scorer (seed 000's baseline); torch inside methods only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.training.vae_data import MelConfig, Normalizer, load_logmels, windows
from audiosim.errors import DatasetError


@dataclass(frozen=True)
class VaeScorer:
    """The GLU-ConvVAE's reconstruction error as the anomaly score (seed 000's baseline).

    One VAE is trained per group on the normal training clips' log-mel windows
    (:func:`audiosim.engine.training.vae_train.train_vae`); a clip's score is the mean, over its windows,
    of the Gaussian negative log-likelihood per time-frequency bin of the window under the
    decoder's output for the latent mean (no sampling). The threshold is the ``percentile`` of
    the training clips' scores (in-sample). Spec: ``vae[:epochs=30,latent=32,channels=32-64-128-256]``.
    """

    epochs: int = 30
    latent: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 256)
    percentile: float = 99.0
    seed: int = 0

    @staticmethod
    def matches(text: str) -> bool:
        return text.strip().partition(":")[0].strip() == "vae"

    @classmethod
    def parse(cls, text: str) -> "VaeScorer":
        _, _, rest = text.strip().partition(":")
        kw: dict = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            try:
                if not eq or key not in cls.__dataclass_fields__:
                    raise ValueError(f"unknown option {item!r}")
                kw[key] = (tuple(int(c) for c in value.split("-")) if key == "channels"
                           else float(value) if key == "percentile" else int(value))
            except ValueError as e:
                raise DatasetError(f"bad VAE scorer spec {text!r}: {e}; e.g. vae:epochs=30,latent=32,channels=32-64-128-256") from None
        return cls(**kw)

    @property
    def spec(self) -> str:
        return f"vae:epochs={self.epochs},latent={self.latent},channels={'-'.join(map(str, self.channels))}"

    def fit_score(self, train_paths: Sequence[str], test_paths: Sequence[str], out_dir: Path, *,
                  progress: bool = False) -> tuple[np.ndarray, float, dict]:
        """Train on ``train_paths``; (test scores, threshold, training summary)."""
        from audiosim.engine.models.vae.model import VAEConfig, load_checkpoint
        from audiosim.engine.training.vae_train import TrainConfig, train_vae

        mel = MelConfig()
        train = load_logmels(list(train_paths), mel, cache=None, progress=False)
        model_cfg = VAEConfig(n_mels=mel.n_mels, frames=mel.frames, channels=self.channels, latent_dim=self.latent)
        result = train_vae(train, mel=mel, model_cfg=model_cfg,
                           cfg=TrainConfig(epochs=self.epochs, seed=self.seed, progress=progress), out_dir=out_dir)
        model, payload = load_checkpoint(result.checkpoint)
        train_scores = self._scores(model, payload, train.logmels, mel)
        test = load_logmels(list(test_paths), mel, cache=None, progress=False)
        if len(test) != len(test_paths):
            raise DatasetError(f"{len(test_paths) - len(test)} test clips could not be decoded: {test.failures[:3]}")
        threshold = float(np.percentile(train_scores, self.percentile))
        summary = {"checkpoint": str(result.checkpoint), "sha256": result.sha256,
                   "best_epoch": result.summary["folds"][result.summary["checkpoint_fold"] - 1]["best_epoch"]}
        return self._scores(model, payload, test.logmels, mel), threshold, summary

    @staticmethod
    def _scores(model, payload: dict, logmels, mel) -> np.ndarray:
        import torch

        from audiosim.engine.models.vae.model import gaussian_nll

        norm = Normalizer.from_dict(payload["norm"])
        out = []
        with torch.inference_mode():
            for lm in logmels:
                x = torch.from_numpy(norm(windows(lm, mel))[:, None])
                mu_x, logvar_x, _, _ = model(x)
                out.append(float(gaussian_nll(x, mu_x, logvar_x).mean()) / (mel.n_mels * mel.frames))
        return np.asarray(out, dtype=np.float64)

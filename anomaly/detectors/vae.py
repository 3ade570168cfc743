"""``vae``: the GLU-ConvVAE reconstruction scorer (seed 000's baseline) behind the detector interface.

Its own front end (64 mel bands, 10 ms hop, 96-frame windows; :mod:`audiosim.engine.models.vae.features`),
computed once per clip through the shared cache. Trained with :func:`audiosim.engine.training.vae_train.train_fold`
(Adam, beta warm-up, 10 % of the clips for validation and the best epoch kept); a window's score is its
Gaussian negative log-likelihood per time-frequency bin under the decoder's output for the latent mean.
"""

from __future__ import annotations

import numpy as np

from audiosim.anomaly.detectors.base import Detector
from audiosim.anomaly.detectors.features import SAMPLE_RATE
from audiosim.engine.audio.decode import load_audio
from audiosim.engine.models.vae.features import MelConfig, Normalizer, log_mel, windows
from audiosim.errors import AnomalyModelError, AudiosimError, DatasetError


class VaeDetector(Detector):
    kind = "vae"
    defaults = {"epochs": 30, "latent": 32, "channels": "32-64-128-256", "batch": 20, "lr": 5e-4}

    def _check_options(self) -> None:
        try:
            self.channels_ = tuple(int(c) for c in self.options["channels"].split("-"))
        except ValueError:
            raise AnomalyModelError(f"vae: channels must read like 32-64-128-256, got {self.options['channels']!r}") from None
        self.mel_ = MelConfig()

    def _inputs(self, paths, cache):
        mel = self.mel_

        def compute(p):
            try:
                return log_mel(load_audio(p, sample_rate=SAMPLE_RATE), mel)
            except AudiosimError as e:
                raise DatasetError(f"{p}: {e}") from None

        return [cache.get(p, f"vae_logmel:{sorted(mel.to_dict().items())}", compute) for p in paths]

    def _model_cfg(self):
        from audiosim.engine.models.vae.model import VAEConfig

        return VAEConfig(n_mels=self.mel_.n_mels, frames=self.mel_.frames, channels=self.channels_,
                         latent_dim=self.options["latent"])

    def _fit(self, inputs, labels):
        from audiosim.engine.training.vae_data import LogMelSet
        from audiosim.engine.training.vae_train import TrainConfig, split_indices, train_fold

        o = self.options
        cfg = TrainConfig(epochs=o["epochs"], batch_size=o["batch"], lr=o["lr"], seed=o["seed"], progress=False,
                          device=self.device, warmup_epochs=min(10.0, float(o["epochs"])))
        data = LogMelSet(paths=tuple(str(i) for i in range(len(inputs))), logmels=tuple(inputs))
        tr, va = split_indices(len(data), folds=1, val_fraction=cfg.val_fraction, seed=cfg.seed)[0]
        res = train_fold(data.subset(tr), data.subset(va), mel=self.mel_, model_cfg=self._model_cfg(), cfg=cfg,
                         seed=cfg.seed)
        self.model_, self.norm_ = res.model, res.norm
        self.history_ = [float(h["train_loss"]) for h in res.history]

    def _frame_scores(self, inputs, labels):
        import torch

        from audiosim.engine.models.vae.model import gaussian_nll

        model = self.model_.to(self.device).eval()
        bins = self.mel_.n_mels * self.mel_.frames
        out = []
        with torch.inference_mode():
            for lm in inputs:
                x = torch.from_numpy(self.norm_(windows(lm, self.mel_))[:, None]).to(self.device)
                mu_x, logvar_x, _, _ = model(x)
                nll = gaussian_nll(x, mu_x, logvar_x)  # [windows], summed over the bins
                out.append(nll.cpu().numpy().astype(np.float64) / bins)
        return out

    def _state(self):
        arrays = {f"net/{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        return {"model": self._model_cfg().to_dict(), "norm": self.norm_.to_dict()}, arrays

    def _restore(self, state, arrays):
        import torch

        from audiosim.engine.models.vae.model import GLUConvVAE, VAEConfig

        self.norm_ = Normalizer.from_dict(state["norm"])
        model = GLUConvVAE(VAEConfig.from_dict(state["model"]))
        model.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net/")},
                              strict=True)
        self.model_ = model.eval()

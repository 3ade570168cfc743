"""``vae``: the GLU-ConvVAE's latent mean per log-mel window, from a checkpoint you trained.

There are no official weights: train a checkpoint on your own recordings with
``audiosim vae train FOLDER --out DIR`` and pass ``weights=DIR/vae.pt`` (or ``DIR``).
Without ``weights`` the embedder looks for ``vae/vae.pt`` under ``$AUDIOSIM_MODELS`` and the
user cache.

Frames: one vector per ``frames``-frame window (0.96 s at the default 96 frames of 10 ms), every
``hop_frames`` (0.48 s), so a five-second clip gives ten frames and every pooling applies; a
clip shorter than one window is padded and gives one frame. ``features`` chooses what a frame
holds (names joined with ``+``, concatenated in that order):

* ``mu``   -- the latent mean mu_z (the thesis's embedding);
* ``encK`` -- encoder block K's output (after its BatchNorm) averaged over the window's time
  axis: channels x mel bands values, the encoder's own features pooled over time;
* ``enc``  -- every encoder block, i.e. ``enc1+enc2+...``.

Without ``features`` the checkpoint's choice is used (``audiosim vae train --features``;
``mu`` when it has none).

The model runs in eval mode (BatchNorm running statistics, no sampling): embeddings are
deterministic and independent of batching. Torch runs on ``num_threads`` threads (1 by default,
restored after each call): a clip's batch is small, and on a shared CPU two contending OpenMP
threads were measured ten times slower than one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo
from audiosim.engine.models.vae.features import MelConfig, Normalizer, log_mel, mel_basis, windows
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsNotFoundError

CHECKPOINT_NAME = "vae.pt"


def resolve_vae_weights(weights: str | Path | None) -> Path:
    """The checkpoint file: ``weights`` (a file, or a folder holding vae.pt), else $AUDIOSIM_MODELS/vae, cache/vae."""
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_dir() and (p / CHECKPOINT_NAME).is_file():
            return (p / CHECKPOINT_NAME).resolve()
        if p.is_file():
            return p.resolve()
        raise WeightsNotFoundError(
            f"VAE checkpoint {weights} not found; train one with `audiosim vae train FOLDER --out DIR` "
            f"and pass --weights DIR/{CHECKPOINT_NAME}"
        )
    local = wts.find_local("vae", (CHECKPOINT_NAME,))
    if local is not None:
        return local.resolve()
    where = "; ".join(f"{label}: {d}" for label, d in wts.candidate_dirs("vae"))
    raise WeightsNotFoundError(
        "the vae embedder needs a checkpoint you train yourself (there is no download): run "
        f"`audiosim vae train FOLDER --out DIR` and pass --weights DIR/{CHECKPOINT_NAME} "
        f"(looked for {CHECKPOINT_NAME} in {where})"
    )


def parse_features(features: str, n_blocks: int) -> tuple[str, ...]:
    """Validate a ``+``-joined feature spec; ``enc`` expands to every block (``enc1`` ... ``encN``)."""
    names = ["mu"] + [f"enc{k}" for k in range(1, n_blocks + 1)]
    parts: list[str] = []
    for p in (q.strip() for q in str(features).split("+")):
        parts.extend(names[1:] if p == "enc" else [p])
    bad = [p for p in parts if p not in names]
    if not parts or bad or len(set(parts)) != len(parts) or "" in parts:
        raise InvalidOptionError(f"features must join distinct names from mu, enc, {', '.join(names[1:])} with '+', "
                            f"got {features!r}")
    return tuple(parts)


class VaeEmbedder(Embedder):
    """Per-window latent means (and optionally time-pooled encoder features) of a trained GLU-ConvVAE."""

    def __init__(self, *, weights: str | Path | None = None, features: str | None = None, batch_size: int = 64,
                 num_threads: int | None = 1, device: str | None = None) -> None:
        try:
            import torch
        except ImportError as e:
            raise MissingDependencyError("the vae embedder needs torch: pip install 'audiosim[torch]'") from e
        from audiosim.engine.models.vae.model import load_checkpoint

        self.path = resolve_vae_weights(weights)
        self._batch_size = int(batch_size)
        self._num_threads = int(num_threads) if num_threads else None
        self._device = torch.device(device or "cpu")
        self._model, payload = load_checkpoint(self.path)
        self._model.to(self._device)
        self._mel = MelConfig.from_dict(payload["mel"])
        self._norm = Normalizer.from_dict(payload["norm"])
        self._basis = mel_basis(self._mel)
        cfg = self._model.cfg
        self._features = parse_features(features or payload.get("features") or "mu", len(cfg.channels))
        dims = {"mu": cfg.latent_dim}
        for k, c in enumerate(cfg.channels, start=1):
            dims[f"enc{k}"] = c * (cfg.n_mels // 2 ** k)
        self.info = EmbedderInfo(
            name="vae",
            version="1" if self._features == ("mu",) else "1/" + "+".join(self._features),
            sample_rate=self._mel.sample_rate,
            dim=sum(dims[p] for p in self._features),
            window_s=self._mel.window_s,
            hop_s=self._mel.hop_s,
            weights_sha256=wts.sha256_file(self.path),
        )

    def options(self) -> dict:
        return {"weights": str(self.path), "features": "+".join(self._features)}

    def window_batch(self, waveform: np.ndarray) -> np.ndarray:
        """The normalised model inputs [T, 1, n_mels, frames] of a waveform."""

        return self._norm(windows(log_mel(waveform, self._mel, self._basis), self._mel))[:, None]

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = self.window_batch(waveform)
        out = []
        threads_before = torch.get_num_threads()
        if self._num_threads:
            torch.set_num_threads(self._num_threads)
        try:
            with torch.inference_mode():
                for b in range(0, x.shape[0], self._batch_size):
                    xb = torch.from_numpy(x[b:b + self._batch_size]).to(self._device)
                    hs = self._model.features(xb)
                    parts = []
                    for p in self._features:
                        if p == "mu":
                            parts.append(self._model.to_mu(self._model.bottleneck_input(hs[-1])))
                        else:  # encK: block K averaged over time -> [B, channels * bands]
                            parts.append(hs[int(p[3:]) - 1].mean(dim=3).flatten(1))
                    out.append(torch.cat(parts, dim=1).cpu().numpy())
        finally:
            torch.set_num_threads(threads_before)
        frames = np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
        return frames, self.frame_times(frames.shape[0])

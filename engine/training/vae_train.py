"""Training the GLU-ConvVAE on log-mel windows: Adam, beta warm-up, validation, early stopping.

``train_vae(logmels, mel=..., model=..., train=..., out_dir=...)`` writes into ``out_dir``:

* ``vae.pt`` -- the checkpoint (weights, model config, mel front end, normalisation, training
  summary) and ``vae.pt.sha256`` (its digest, also in ``training.json``);
* ``training.json`` -- configuration, per-epoch history (per fold), timings, why training stopped;
* ``curves.png`` -- loss, reconstruction (NLL) and KL per epoch, train and validation
  (with ``folds > 1``: mean +- std over the folds, as in the thesis's K-fold curves);
* ``reconstructions.png`` -- five validation clips, original above reconstruction.

With ``folds = K > 1`` the clips are split into K folds; each fold is the validation set of one
run and the checkpoint is the run with the lowest validation loss.

Numerical safety: log-variances are bounded in the model, gradients are clipped, and a batch
whose loss is not finite is skipped (too many in a row raise :class:`TrainingError`); the
weights written are checked to be finite.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiosim.engine.models.embedders.vae import parse_features
from audiosim.engine.models.vae.model import GLUConvVAE, VAEConfig, beta_at, save_checkpoint, vae_loss
from audiosim.engine.models.weights import sha256_file
from audiosim.engine.training.vae_data import LogMelSet, MelConfig, Normalizer, WindowSampler, windows
from audiosim.errors import TrainingError
from audiosim.files import write_json_atomic

CHECKPOINT_NAME = "vae.pt"
MAX_BAD_BATCHES = 20


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the thesis's (Adam 5e-4, batch 20, beta 1 warmed up over 10 epochs)."""

    epochs: int = 50
    batch_size: int = 20
    lr: float = 5e-4
    beta: float = 1.0
    warmup_epochs: float = 10.0
    val_fraction: float = 0.1
    patience: int = 10
    grad_clip: float = 5.0
    seed: int = 0
    random_crop: bool = False
    crops_per_clip: int = 1
    folds: int = 1
    time_limit_s: float | None = None
    num_threads: int | None = 1  # one thread: on a shared CPU, contending OpenMP threads are many times slower
    progress: bool = True
    device: str = "cpu"  # cpu or cuda[:N] (batches are moved there; the returned model is back on the CPU)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.beta < 0 or self.warmup_epochs < 0:
            raise TrainingError("need epochs >= 1, batch_size >= 1, lr > 0, beta >= 0, warmup_epochs >= 0")
        if not 0 <= self.val_fraction < 1:
            raise TrainingError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.folds < 1 or self.crops_per_clip < 1 or self.patience < 1 or self.grad_clip <= 0:
            raise TrainingError("need folds >= 1, crops_per_clip >= 1, patience >= 1 and grad_clip > 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FoldResult:
    model: GLUConvVAE
    norm: Normalizer
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped: str = "epochs"
    val_set: LogMelSet | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    sha256: str
    summary: dict


def split_indices(n: int, *, folds: int, val_fraction: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) clip indices: one random split, or ``folds`` disjoint validation folds."""
    perm = np.random.default_rng(seed).permutation(n)
    if folds > 1:
        if n < folds:
            raise TrainingError(f"{folds} folds need at least {folds} clips, got {n}")
        parts = np.array_split(perm, folds)
        return [(np.sort(np.concatenate(parts[:k] + parts[k + 1:])), np.sort(parts[k])) for k in range(folds)]
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    return [(np.sort(perm[n_val:]), np.sort(perm[:n_val]))]


def _evaluate(model: GLUConvVAE, sampler: WindowSampler, idx: np.ndarray, *, beta: float, batch_size: int,
              device: str = "cpu") -> dict:
    model.eval()
    tot = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
    n = 0
    with torch.no_grad():
        for xb in sampler.batches(idx, batch_size):
            x = torch.from_numpy(xb).to(device)
            terms = vae_loss(x, model(x), beta)
            b = x.shape[0]
            tot["loss"] += float(terms.total) * b
            tot["nll"] += float(terms.nll) * b
            tot["kl"] += float(terms.kl) * b
            n += b
    return {k: v / max(n, 1) for k, v in tot.items()}


def train_fold(train_set: LogMelSet, val_set: LogMelSet, *, mel: MelConfig, model_cfg: VAEConfig, cfg: TrainConfig,
               seed: int, deadline: float | None = None, desc: str = "train") -> FoldResult:
    """Train one model; the returned model holds the weights of the best validation epoch."""
    from tqdm.auto import tqdm

    if len(train_set) == 0:
        raise TrainingError("no training clips")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GLUConvVAE(model_cfg).to(cfg.device)
    norm = Normalizer.fit(train_set.logmels)
    sampler = WindowSampler(train_set.logmels, mel, norm, random_crop=cfg.random_crop, crops_per_clip=cfg.crops_per_clip)
    val_sampler = WindowSampler(val_set.logmels, mel, norm, random_crop=cfg.random_crop,
                                crops_per_clip=cfg.crops_per_clip) if len(val_set) else None
    val_idx = val_sampler.epoch_index(np.random.default_rng(seed + 1)) if val_sampler else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    result = FoldResult(model=model, norm=norm, val_set=val_set)
    best_state = None
    since_best = 0
    t0 = time.perf_counter()
    n_batches = math.ceil(len(sampler.epoch_index(np.random.default_rng(0))) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * n_batches, desc=desc, unit="batch", disable=not cfg.progress, leave=True)
    timed_out = False
    try:
        for epoch in range(cfg.epochs):
            model.train()
            idx = sampler.epoch_index(rng)
            n_b = math.ceil(len(idx) / cfg.batch_size)
            sums = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
            seen = 0
            bad_run = skipped = 0
            beta = 0.0
            for b, xb in enumerate(sampler.batches(idx, cfg.batch_size)):
                if deadline is not None and time.perf_counter() > deadline:
                    timed_out = True
                    break
                beta = beta_at(epoch + b / n_b, beta=cfg.beta, warmup_epochs=cfg.warmup_epochs)
                x = torch.from_numpy(xb).to(cfg.device, non_blocking=True)
                terms = vae_loss(x, model(x), beta)
                if not torch.isfinite(terms.total):
                    skipped += 1
                    bad_run += 1
                    opt.zero_grad(set_to_none=True)
                    if bad_run >= MAX_BAD_BATCHES:
                        raise TrainingError(f"{bad_run} batches in a row gave a non-finite loss at epoch {epoch + 1}; "
                                            "lower --lr or --beta")
                    bar.update(1)
                    continue
                bad_run = 0
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                k = x.shape[0]
                seen += k
                sums["loss"] += float(terms.total.detach()) * k
                sums["nll"] += float(terms.nll.detach()) * k
                sums["kl"] += float(terms.kl.detach()) * k
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / seen:.1f}", rec=f"{sums['nll'] / seen:.1f}",
                                kl=f"{sums['kl'] / seen:.2f}", beta=f"{beta:.3f}")
            if seen == 0:
                if timed_out:
                    break
                raise TrainingError(f"every batch of epoch {epoch + 1} gave a non-finite loss; lower --lr or --beta")
            row = {"epoch": epoch + 1, "beta": beta, "skipped_batches": skipped, "partial": timed_out,
                   **{f"train_{k}": v / seen for k, v in sums.items()}}
            if val_sampler is not None:
                ev = _evaluate(model, val_sampler, val_idx, beta=cfg.beta, batch_size=max(cfg.batch_size, 64),
                               device=cfg.device)
                row.update({f"val_{k}": v for k, v in ev.items()})
                monitor = ev["loss"]
            else:
                monitor = row["train_loss"]
            row["seconds"] = time.perf_counter() - t0
            result.history.append(row)
            if math.isfinite(monitor) and monitor < result.best_val:
                result.best_val, result.best_epoch = monitor, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
            if timed_out:
                result.stopped = "time_limit"
                break
            if val_sampler is not None and epoch + 1 >= cfg.warmup_epochs and since_best >= cfg.patience:
                result.stopped = "early_stopping"
                break
    finally:
        bar.close()
    if best_state is None:
        raise TrainingError("training produced no finite epoch; lower --lr or --beta")
    model.load_state_dict(best_state)
    model.cpu().eval()
    if not all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        raise TrainingError("the trained weights contain NaN/inf; lower --lr or --beta")
    result.seconds = time.perf_counter() - t0
    return result


def train_vae(logmels: LogMelSet, *, mel: MelConfig, model_cfg: VAEConfig, cfg: TrainConfig,
              out_dir: str | Path, features: str = "mu") -> TrainResult:
    """Train (one split or K folds), then write checkpoint, sha256, training.json and the two figures.

    ``features`` is stored in the checkpoint as the ``vae`` embedder's default frame features.
    """

    features = "+".join(parse_features(features, len(model_cfg.channels)))

    if (mel.n_mels, mel.frames) != (model_cfg.n_mels, model_cfg.frames):
        raise TrainingError(f"mel front end ({mel.n_mels}x{mel.frames}) and model input "
                            f"({model_cfg.n_mels}x{model_cfg.frames}) differ")
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _train_vae(logmels, mel=mel, model_cfg=model_cfg, cfg=cfg, out_dir=out_dir, features=features)
    finally:
        torch.set_num_threads(threads_before)


def _train_vae(logmels: LogMelSet, *, mel: MelConfig, model_cfg: VAEConfig, cfg: TrainConfig,
               out_dir: str | Path, features: str) -> TrainResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    deadline = t0 + cfg.time_limit_s if cfg.time_limit_s else None
    splits = split_indices(len(logmels), folds=cfg.folds, val_fraction=cfg.val_fraction, seed=cfg.seed)
    results = []
    for k, (tr, va) in enumerate(splits):
        desc = f"fold {k + 1}/{len(splits)}" if len(splits) > 1 else "train"
        results.append(train_fold(logmels.subset(tr), logmels.subset(va), mel=mel, model_cfg=model_cfg, cfg=cfg,
                                  seed=cfg.seed + k, deadline=deadline, desc=desc))
    best_k = int(np.argmin([r.best_val for r in results]))
    best = results[best_k]
    seconds = time.perf_counter() - t0
    summary = {
        "train": cfg.to_dict(), "model": model_cfg.to_dict(), "mel": mel.to_dict(), "features": features,
        "clips": len(logmels), "decode_failures": [list(f) for f in logmels.failures],
        "folds": [{"fold": k + 1, "train_clips": len(tr), "val_clips": len(va), "best_epoch": r.best_epoch,
                   "best_val_loss": r.best_val, "stopped": r.stopped, "seconds": r.seconds, "history": r.history}
                  for k, ((tr, va), r) in enumerate(zip(splits, results))],
        "checkpoint_fold": best_k + 1, "seconds": seconds,
    }
    ckpt = out / CHECKPOINT_NAME
    save_checkpoint(ckpt, best.model, mel=mel.to_dict(), norm=best.norm.to_dict(), features=features,
                    extra={"train": cfg.to_dict(), "best_epoch": best.best_epoch, "best_val_loss": best.best_val,
                           "stopped": best.stopped, "clips": len(logmels), "seconds": seconds})

    sha = sha256_file(ckpt)
    (out / (CHECKPOINT_NAME + ".sha256")).write_text(f"{sha}  {CHECKPOINT_NAME}\n")
    summary.update(checkpoint=str(ckpt), sha256=sha)
    write_json_atomic(out / "training.json", summary, sort_keys=False)
    plot_curves([r.history for r in results], out / "curves.png")
    if best.val_set is not None and len(best.val_set):
        plot_reconstructions(best.model, best.val_set, mel, best.norm, out / "reconstructions.png")
    return TrainResult(checkpoint=ckpt, sha256=sha, summary=summary)


# ---------------------------------------------------------------------------------------------
# Figures


def _stack(histories: list[list[dict]], key: str) -> np.ndarray:
    n = max(len(h) for h in histories)
    out = np.full((len(histories), n), np.nan)
    for i, h in enumerate(histories):
        for j, row in enumerate(h):
            out[i, j] = row.get(key, np.nan)
    return out


def plot_curves(histories: list[list[dict]], path: str | Path) -> None:
    """Loss, reconstruction NLL and KL per epoch; over several folds, mean +- std bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (term, title) in zip(axes, (("loss", "total loss (NLL + beta KL)"), ("nll", "reconstruction NLL"),
                                        ("kl", "KL"))):
        for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            a = _stack(histories, f"{split}_{term}")
            if np.isnan(a).all():
                continue
            ep = np.arange(1, a.shape[1] + 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # epochs that only some folds reached
                m, s = np.nanmean(a, axis=0), np.nanstd(a, axis=0)
            label = split if len(histories) == 1 else f"{split} (mean ± std, {len(histories)} folds)"
            ax.plot(ep, m, color=colour, label=label)
            if len(histories) > 1:
                ax.fill_between(ep, m - s, m + s, color=colour, alpha=0.25)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reconstruction_examples(model: GLUConvVAE, val_set: LogMelSet, mel: MelConfig, norm: Normalizer,
                            n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions) [n, n_mels, frames] in log-mel units: the loudest window of the first n clips."""

    picks = []
    for lm in val_set.logmels[:n]:
        w = windows(lm, mel)
        picks.append(w[int(np.argmax(w.mean(axis=(1, 2))))])
    x = norm(np.stack(picks))[:, None]
    model.eval()
    with torch.no_grad():
        mu_x, _, _, _ = model(torch.from_numpy(x))
    return norm.invert(x[:, 0]), norm.invert(mu_x[:, 0].numpy())


def plot_reconstructions(model: GLUConvVAE, val_set: LogMelSet, mel: MelConfig, norm: Normalizer,
                         path: str | Path, n: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orig, rec = reconstruction_examples(model, val_set, mel, norm, n)
    k = orig.shape[0]
    fig, axes = plt.subplots(2, k, figsize=(2.6 * k, 5), squeeze=False)
    for j in range(k):
        lo, hi = float(orig[j].min()), float(orig[j].max())
        for i, (img, title) in enumerate(((orig[j], "original"), (rec[j], "reconstruction"))):
            ax = axes[i, j]
            ax.imshow(img, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{title}\n{Path(val_set.paths[j]).name}" if i == 0 else title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("mel band")
    axes[1, 0].set_ylabel("mel band")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``audiosim vae``: train the GLU-ConvVAE embedder on your own recordings (no labels needed)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import Number
from audiosim.engine.models.embedders.vae import parse_features
from audiosim.engine.training.vae_data import (
    MelConfig,
    default_cache_root,
    load_logmels,
    paths_from_collection,
    paths_from_folder,
)
from audiosim.errors import TrainingError


@click.group("vae")
def vae() -> None:
    """Train the unsupervised GLU-ConvVAE embedder (use it with --embedder vae --weights CKPT)."""


@vae.command("train")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--collection", "collection_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Train on the files of an existing collection instead of FOLDER.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: vae.pt, vae.pt.sha256, training.json, curves.png, reconstructions.png.")
@click.option("--epochs", default=50, show_default=True, help="Maximum epochs (early stopping may end sooner).")
@click.option("--latent-dim", default=64, show_default=True, help="Latent size (thesis: 32, 64, 128, 256).")
@click.option("--beta", default=1.0, show_default=True, type=Number(min=0), help="KL weight after warm-up (below 1 keeps more detail).")
@click.option("--warmup", "warmup_epochs", default=10.0, show_default=True, type=Number(min=0), help="Epochs of linear beta warm-up from 0.")
@click.option("--lr", default=5e-4, show_default=True, type=Number(min=0, min_open=True), help="Adam learning rate.")
@click.option("--batch-size", default=20, show_default=True)
@click.option("--folds", default=1, show_default=True, help="K > 1: K-fold runs, curves as mean ± std, best fold kept.")
@click.option("--val-fraction", default=0.1, show_default=True, type=Number(min=0, max=1, max_open=True), help="Clips held out for validation (folds = 1).")
@click.option("--patience", default=10, show_default=True, help="Early stopping: epochs without validation improvement.")
@click.option("--seed", default=0, show_default=True)
@click.option("--n-mels", default=64, show_default=True, help="Mel bands (a multiple of 16).")
@click.option("--frames", default=96, show_default=True, help="10 ms frames per model window (a multiple of 16).")
@click.option("--hop-frames", default=None, type=int, help="Frames between embedding windows [frames/2].")
@click.option("--channels", default="16,32,64,128", show_default=True,
              help="GLU channels of the 4 encoder blocks (thesis-sized: 32,64,128,256).")
@click.option("--bottleneck", type=click.Choice(["flatten", "timepool"]), default="flatten", show_default=True,
              help="Dense bottleneck on the flattened feature map (thesis) or on it pooled over time.")
@click.option("--features", default="mu", show_default=True,
              help="What the embedder returns per window by default: mu (latent mean), enc (every encoder block "
                   "averaged over time), encK (block K), joined with '+', e.g. mu+enc.")
@click.option("--random-crop/--no-random-crop", default=True, show_default=True,
              help="Augment with random window crops each epoch (else every fixed window).")
@click.option("--crops-per-clip", default=1, show_default=True, help="Random crops per clip and epoch.")
@click.option("--time-limit", "time_limit_min", default=None, type=Number(min=0, min_open=True), help="Stop training after this many minutes.")
@click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
              help="Where decoded log-mels are cached [AUDIOSIM_CACHE or ~/.cache/audiosim /vae_logmel].")
@click.option("--no-cache", is_flag=True, help="Decode every file without caching the log-mels.")
@click.option("--workers", default=2, show_default=True, help="Decoding threads.")
@click.option("--threads", "num_threads", default=1, show_default=True,
              help="Torch CPU threads (more helps only on an otherwise idle machine).")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(folder, collection_dir, out_dir, epochs, latent_dim, beta, warmup_epochs, lr, batch_size, folds,
              val_fraction, patience, seed, n_mels, frames, hop_frames, channels, bottleneck, features, random_crop,
              crops_per_clip, time_limit_min, cache_dir, no_cache, workers, num_threads, as_json, quiet):
    """Train a VAE checkpoint on the audio under FOLDER (or a collection's files)."""

    if (folder is None) == (collection_dir is None):
        raise click.UsageError("give either FOLDER or --collection DIR")
    try:
        chans = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {channels!r}", param_hint="--channels")

    from audiosim.engine.models.vae.model import VAEConfig
    from audiosim.engine.training.vae_train import TrainConfig, train_vae

    mel = MelConfig(n_mels=n_mels, frames=frames, hop_frames=hop_frames or max(frames // 2, 1))
    model_cfg = VAEConfig(n_mels=n_mels, frames=frames, channels=chans, latent_dim=latent_dim, bottleneck=bottleneck)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, warmup_epochs=warmup_epochs,
                      val_fraction=val_fraction, patience=patience, seed=seed, random_crop=random_crop,
                      crops_per_clip=crops_per_clip, folds=folds,
                      time_limit_s=time_limit_min * 60 if time_limit_min else None, num_threads=num_threads,
                      progress=not quiet)
    parse_features(features, len(chans))  # fail before decoding anything
    paths = paths_from_folder(folder) if folder else paths_from_collection(collection_dir)
    cache = None if no_cache else (cache_dir or default_cache_root())
    logmels = load_logmels(paths, mel, cache=cache, workers=workers, progress=not quiet)
    if len(logmels) < 2:
        raise TrainingError(f"need at least 2 decodable clips to train and validate, got {len(logmels)}")
    result = train_vae(logmels, mel=mel, model_cfg=model_cfg, cfg=cfg, out_dir=out_dir, features=features)
    s = result.summary
    if as_json:
        click.echo(json.dumps({k: v for k, v in s.items() if k != "folds"} |
                              {"folds": [{k: v for k, v in f.items() if k != "history"} for f in s["folds"]]},
                              indent=2, default=float))
        return
    for f in s["folds"]:
        last = f["history"][-1] if f["history"] else {}
        click.echo(f"fold {f['fold']}: {f['train_clips']} train / {f['val_clips']} validation clips, "
                   f"{len(f['history'])} epochs ({f['stopped']}), best epoch {f['best_epoch']} "
                   f"(validation loss {f['best_val_loss']:.1f}); last epoch rec {last.get('train_nll', float('nan')):.1f} "
                   f"KL {last.get('train_kl', float('nan')):.2f}")
    if logmels.failures:
        click.echo(f"{len(logmels.failures)} files could not be decoded (listed in training.json)")
    click.echo(f"trained on {s['clips']} clips in {s['seconds']:.0f} s; checkpoint {result.checkpoint} "
               f"(sha256 {result.sha256[:16]}...)")
    click.echo(f"use it: audiosim index FOLDER --collection DIR --embedder vae --weights {result.checkpoint}")

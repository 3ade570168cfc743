"""The GLU-ConvVAE: loss terms, data pipeline, training (tiny, synthetic), checkpoints, embedder, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from audiosim.engine.audio import synth  # noqa: E402
from audiosim.engine.training.vae_data import (  # noqa: E402
    LOG_OFFSET, LogMelSet, MelConfig, Normalizer, WindowSampler, crop_ranges, load_logmels, log_mel, window_index,
    windows,
)
from audiosim.engine.models.vae.model import (  # noqa: E402
    GLUConvVAE, VAEConfig, beta_at, gaussian_nll, kl_standard_normal, load_checkpoint, save_checkpoint, vae_loss,
)
from audiosim.errors import AudiosimError, TrainingError, WeightsFormatError, WeightsNotFoundError  # noqa: E402

SR = 16000
TINY_MEL = MelConfig(n_mels=16, frames=32, hop_frames=16)
TINY_MODEL = VAEConfig(n_mels=16, frames=32, channels=(4, 8, 8, 8), latent_dim=4)


def _clips(n_per_kind: int = 3, seconds: float = 1.2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make(rng, SR, seconds) for _ in range(n_per_kind) for make in synth.KINDS.values()]


@pytest.fixture(scope="module")
def tiny_set() -> LogMelSet:
    waves = _clips()
    return LogMelSet(paths=tuple(f"clip{i}.wav" for i in range(len(waves))),
                     logmels=tuple(log_mel(w, TINY_MEL) for w in waves))


def _train_cfg(**kw):
    from audiosim.engine.training.vae_train import TrainConfig

    base = dict(epochs=2, batch_size=8, lr=2e-3, beta=1.0, warmup_epochs=10, val_fraction=0.2, seed=3,
                random_crop=True, crops_per_clip=4, progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    from audiosim.engine.training.vae_train import train_vae

    out = tmp_path_factory.mktemp("vae_run")
    return train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(), out_dir=out)


# ------------------------------------------------------------------ loss terms (hand-computed)
def test_gaussian_nll_golden():
    x = torch.tensor([[[[0.0, 1.0]]]])
    mu = torch.tensor([[[[0.0, 0.0]]]])
    logvar = torch.tensor([[[[0.0, math.log(4.0)]]]])
    # pixel 1: 0.5 log 2pi; pixel 2: 0.5 (log 2pi + log 4 + 1/4)
    expected = 0.5 * math.log(2 * math.pi) + 0.5 * (math.log(2 * math.pi) + math.log(4.0) + 0.25)
    assert float(gaussian_nll(x, mu, logvar)[0]) == pytest.approx(expected, rel=1e-6)


def test_kl_golden():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # dim 1: 0.5 * 1; dim 2: 0.5 * (2 - 1 - log 2); second example: 0
    kl = kl_standard_normal(mu, logvar)
    assert float(kl[0]) == pytest.approx(0.5 + 0.5 * (1 - math.log(2.0)), rel=1e-6)
    assert float(kl[1]) == 0.0


def test_beta_warmup_is_linear():
    assert beta_at(0, beta=1.0, warmup_epochs=10) == 0.0
    assert beta_at(5, beta=1.0, warmup_epochs=10) == pytest.approx(0.5)
    assert beta_at(2.5, beta=0.2, warmup_epochs=10) == pytest.approx(0.05)
    assert beta_at(12, beta=0.2, warmup_epochs=10) == pytest.approx(0.2)
    assert beta_at(0, beta=0.3, warmup_epochs=0) == pytest.approx(0.3)


def test_loss_stays_finite_on_extreme_inputs():
    torch.manual_seed(0)
    model = GLUConvVAE(TINY_MODEL)
    for scale in (0.0, 1e4):
        x = torch.full((3, 1, 16, 32), scale)
        x[0] += torch.randn(1, 16, 32) * scale
        terms = vae_loss(x, model(x), beta=1.0)
        assert torch.isfinite(terms.total) and torch.isfinite(terms.kl) and torch.isfinite(terms.nll)
        _, logvar_x, _, logvar_z = model(x)
        assert float(logvar_x.min()) >= TINY_MODEL.x_logvar_min and float(logvar_x.max()) <= TINY_MODEL.x_logvar_max
        assert float(logvar_z.max()) <= TINY_MODEL.z_logvar_max


def test_model_shapes_and_config_checks():
    model = GLUConvVAE(TINY_MODEL)
    mu_x, logvar_x, mu_z, logvar_z = model(torch.zeros(2, 1, 16, 32))
    assert mu_x.shape == logvar_x.shape == (2, 1, 16, 32) and mu_z.shape == logvar_z.shape == (2, 4)
    assert len(model.encoder) == 4 and isinstance(model.encoder[0].norm, torch.nn.BatchNorm2d)
    assert model.encoder[0].conv.out_channels == 2 * TINY_MODEL.channels[0]  # GLU halves 2C to C
    pooled = GLUConvVAE(VAEConfig(n_mels=16, frames=32, channels=(4, 8, 8, 8), latent_dim=4, bottleneck="timepool"))
    assert pooled.to_mu.in_features == 2 * 8 * 1
    with pytest.raises(AudiosimError, match="multiples of 16"):
        VAEConfig(n_mels=20, frames=32)
    with pytest.raises(AudiosimError):
        VAEConfig(bottleneck="nope")


# ------------------------------------------------------------------ data
def test_log_mel_windows_cover_clip_and_short_clip_gives_one():
    lm = log_mel(np.zeros(10, dtype=np.float32), TINY_MEL)
    assert windows(lm, TINY_MEL).shape == (1, 16, 32)
    lm = log_mel(_clips(1, 2.0)[0], TINY_MEL)
    w = windows(lm, TINY_MEL)
    # 2 s padded to whole hops: 1 + ceil((32000 - 5360) / 2560) windows
    assert w.shape == (1 + math.ceil((32000 - TINY_MEL.min_samples) / (16 * 160)), 16, 32)
    np.testing.assert_array_equal(w[1], lm[16:48].T)


def test_normalizer_golden_and_ignores_digital_silence():
    floor = np.log(LOG_OFFSET)
    a = np.array([[1.0, 2.0], [3.0, 6.0], [floor, floor]], dtype=np.float32)
    n = Normalizer.fit([a])
    assert n.mean == pytest.approx((2.0, 4.0)) and n.std == pytest.approx((1.0, 2.0))
    x = np.array([[[2.0], [8.0]]], dtype=np.float32)  # [1, n_mels=2, frames=1]
    np.testing.assert_allclose(n(x), [[[0.0], [2.0]]])
    np.testing.assert_allclose(n.invert(n(x)), x)
    assert Normalizer.from_dict(json.loads(json.dumps(n.to_dict()))) == n


def test_crops_touch_sound_and_silent_windows_are_skipped():
    tone = synth.tone(duration_s=0.5, sr=SR)
    wave = np.concatenate([tone, np.zeros(2 * SR, dtype=np.float32)])  # sound, then zero padding
    lm = log_mel(wave, TINY_MEL)
    lo, hi = crop_ranges([lm], TINY_MEL)[0]
    assert lo == 0 and hi < 50 + 1  # the tone ends near frame 50: a crop must start before it
    starts = window_index([lm], TINY_MEL)[:, 1]
    assert starts.max() <= 48 and len(starts) < windows(lm, TINY_MEL).shape[0]
    sampler = WindowSampler((lm,), TINY_MEL, Normalizer.fit([lm]), random_crop=True, crops_per_clip=5)
    idx = sampler.epoch_index(np.random.default_rng(0))
    assert len(idx) == 5 and (idx[:, 1] <= hi).all()
    assert sampler.batch(idx).shape == (5, 1, 16, 32)


def test_logmel_cache_round_trip(tmp_path):
    import soundfile as sf

    paths = []
    for i, w in enumerate(_clips(1, 1.0)):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, w, SR)
        paths.append(str(p))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    cache = tmp_path / "cache"
    first = load_logmels(paths + [str(bad)], TINY_MEL, cache=cache, progress=False)
    assert len(first) == len(paths) and first.failures[0][0] == str(bad)
    assert len(list(cache.glob("*/meta.json"))) == 1
    again = load_logmels(paths + [str(bad)], TINY_MEL, cache=cache, progress=False)
    assert again.paths == first.paths and len(again.failures) == 1
    for a, b in zip(first.logmels, again.logmels):
        np.testing.assert_allclose(a, b, atol=0.02)  # stored as float16


# ------------------------------------------------------------------ training
def test_tiny_training_loss_falls_without_nan(trained):
    s = trained.summary
    hist = s["folds"][0]["history"]
    assert len(hist) == 2
    for row in hist:
        for k in ("train_loss", "train_nll", "train_kl", "val_loss", "val_nll", "val_kl"):
            assert math.isfinite(row[k]), (k, row)
        assert row["skipped_batches"] == 0
    assert 0 < hist[0]["beta"] < hist[1]["beta"] < 1.0  # still warming up
    assert hist[1]["train_loss"] < hist[0]["train_loss"]
    assert hist[1]["train_nll"] < hist[0]["train_nll"]


def test_outputs_written(trained):
    from audiosim.engine.models.weights import sha256_file

    out = trained.checkpoint.parent
    assert trained.sha256 == sha256_file(trained.checkpoint)
    assert (out / "vae.pt.sha256").read_text().split()[0] == trained.sha256
    summary = json.loads((out / "training.json").read_text())
    assert summary["sha256"] == trained.sha256 and summary["train"]["beta"] == 1.0
    for png in ("curves.png", "reconstructions.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    model, payload = load_checkpoint(trained.checkpoint)
    assert payload["config"] == TINY_MODEL.to_dict() and payload["mel"] == TINY_MEL.to_dict()
    assert len(payload["norm"]["mean"]) == 16 and not model.training


def test_seed_determinism(tiny_set, trained, tmp_path):
    from audiosim.engine.training.vae_train import train_vae

    again = train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(), out_dir=tmp_path / "a")
    m1, _ = load_checkpoint(trained.checkpoint)
    m2, _ = load_checkpoint(again.checkpoint)
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v1, v2), k
    other = train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(seed=4, epochs=1),
                      out_dir=tmp_path / "b")
    m3, _ = load_checkpoint(other.checkpoint)
    assert not torch.equal(m1.to_mu.weight, m3.to_mu.weight)


def test_kfold_curves(tiny_set, tmp_path):
    from audiosim.engine.training.vae_train import train_vae

    res = train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(epochs=1, folds=3, crops_per_clip=1),
                    out_dir=tmp_path)
    folds = res.summary["folds"]
    assert len(folds) == 3 and sum(f["val_clips"] for f in folds) == len(tiny_set)
    assert res.summary["checkpoint_fold"] == 1 + int(np.argmin([f["best_val_loss"] for f in folds]))
    assert (tmp_path / "curves.png").is_file()


def test_bad_training_configuration():
    from audiosim.engine.training.vae_train import TrainConfig, train_vae

    with pytest.raises(TrainingError):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(TrainingError, match="differ"):
        train_vae(LogMelSet(paths=(), logmels=()), mel=MelConfig(), model_cfg=TINY_MODEL, cfg=_train_cfg(),
                  out_dir="/nonexistent-never-created")


# ------------------------------------------------------------------ embedder
def test_checkpoint_round_trip_gives_identical_mu_z(trained, tiny_set):
    from audiosim.engine.models.embedders import get_embedder

    emb = get_embedder("vae", weights=str(trained.checkpoint))
    assert emb.info.dim == 4 and emb.info.weights_sha256 == trained.sha256
    assert emb.info.window_s == pytest.approx(0.32) and emb.info.hop_s == pytest.approx(0.16)
    wave = _clips(1, 1.5, seed=9)[1]
    frames, times = emb.embed_frames(wave)
    model, payload = load_checkpoint(trained.checkpoint)
    x = torch.from_numpy(Normalizer.from_dict(payload["norm"])(windows(log_mel(wave, TINY_MEL), TINY_MEL))[:, None])
    with torch.no_grad():
        mu_z, _ = model.encode(x)
    np.testing.assert_array_equal(frames, mu_z.numpy())
    np.testing.assert_array_equal(emb.embed_frames(wave)[0], frames)
    # rebuilt from its options (what a collection stores): same vectors
    again = get_embedder("vae", **emb.options())
    np.testing.assert_array_equal(again.embed_frames(wave)[0], frames)
    # the directory works too; encoder features are each block averaged over time (channels x bands)
    both = get_embedder("vae", weights=str(trained.checkpoint.parent), features="mu+enc")
    f2, _ = both.embed_frames(wave)
    assert both.info.version == "1/mu+enc1+enc2+enc3+enc4"
    assert f2.shape == (frames.shape[0], 4 + 4 * 8 + 8 * 4 + 8 * 2 + 8 * 1) == (frames.shape[0], both.info.dim)
    np.testing.assert_array_equal(f2[:, :4], frames)
    with torch.no_grad():
        h2 = model.features(x)[1]
    np.testing.assert_allclose(f2[:, 4 + 32:4 + 64], h2.mean(dim=3).flatten(1).numpy(), rtol=1e-6, atol=1e-6)
    assert get_embedder("vae", weights=str(trained.checkpoint), features="enc4").info.dim == 8


def test_checkpoint_carries_default_features(tiny_set, tmp_path):
    from audiosim.engine.models.embedders import get_embedder
    from audiosim.engine.training.vae_train import train_vae

    res = train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(epochs=1), out_dir=tmp_path,
                    features="mu+enc4")
    emb = get_embedder("vae", weights=str(res.checkpoint))
    assert emb.info.dim == 4 + 8 and emb.options()["features"] == "mu+enc4"
    assert get_embedder("vae", weights=str(res.checkpoint), features="mu").info.dim == 4
    with pytest.raises(AudiosimError, match="features"):
        train_vae(tiny_set, mel=TINY_MEL, model_cfg=TINY_MODEL, cfg=_train_cfg(epochs=1), out_dir=tmp_path,
                  features="enc5")


def test_missing_or_foreign_weights(tmp_path, monkeypatch):
    from audiosim.engine.models.embedders import get_embedder

    monkeypatch.setenv("AUDIOSIM_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFoundError, match="audiosim vae train"):
        get_embedder("vae")
    with pytest.raises(WeightsNotFoundError, match="audiosim vae train"):
        get_embedder("vae", weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFormatError):
        get_embedder("vae", weights=str(junk))
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsFormatError, match="not an audiosim VAE"):
        get_embedder("vae", weights=str(tmp_path / "other.pt"))
    from audiosim.engine.models.embedders.vae import parse_features

    assert parse_features("enc+mu", 2) == ("enc1", "enc2", "mu")
    for bad in ("mu+wat", "mu+mu", "enc3", "", "mu++enc1"):
        with pytest.raises(AudiosimError, match="features"):
            parse_features(bad, 2)


def test_save_load_checkpoint_preserves_batchnorm_statistics(tmp_path):
    torch.manual_seed(1)
    model = GLUConvVAE(TINY_MODEL)
    model.train()
    model(torch.randn(6, 1, 16, 32) * 3 + 1)  # moves BatchNorm running statistics
    model.eval()
    save_checkpoint(tmp_path / "m.pt", model, mel=TINY_MEL.to_dict(), norm={"mean": [0.0] * 16, "std": [1.0] * 16})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 1, 16, 32)
    with torch.no_grad():
        assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])


def test_light_modules_do_not_import_torch():
    code = ("import sys; import audiosim.cli, audiosim.commands.vae, audiosim.engine.training.vae_data, "
            "audiosim.engine.models.embedders.vae; sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------ CLI end to end
def test_cli_trains_and_indexes(demo_folder, tmp_path):
    from click.testing import CliRunner

    from audiosim.cli import main

    runner = CliRunner()
    out = tmp_path / "ckpt"
    tiny = ["--epochs", "2", "--n-mels", "16", "--frames", "32", "--channels", "4,8,8,8", "--latent-dim", "4",
            "--batch-size", "8", "--seed", "1", "--quiet", "--cache", str(tmp_path / "cache")]
    r = runner.invoke(main, ["vae", "train", str(demo_folder), "--out", str(out), "--beta", "0.5", "--warmup", "1",
                             "--features", "mu+enc4", "--json"] + tiny)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["clips"] == 20 and summary["train"]["beta"] == 0.5 and (out / "vae.pt").is_file()
    coll = tmp_path / "coll"
    r = runner.invoke(main, ["index", str(demo_folder), "--collection", str(coll), "--embedder", "vae", "--weights",
                             str(out / "vae.pt"), "--pooling", "mu+sigma", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["info", "--collection", str(coll), "--json"])
    assert json.loads(r.output)["embedder"]["dim"] == 4 + 8  # mu + enc4, the checkpoint's features
    r = runner.invoke(main, ["query", str(next(demo_folder.rglob("tone_00.*"))), "--collection", str(coll), "-k", "3",
                             "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["queries"][0]["results"][0]["path"].endswith(("tone_00.wav", "tone_00.flac", "tone_00.ogg"))
    # retrain from the collection's files
    r = runner.invoke(main, ["vae", "train", "--collection", str(coll), "--out", str(tmp_path / "c2")] + tiny)
    assert r.exit_code == 0, r.output
    assert "trained on 20 clips" in r.output
    r = runner.invoke(main, ["vae", "train", "--out", str(tmp_path / "c3")] + tiny)
    assert r.exit_code != 0 and "FOLDER or --collection" in r.output
    r = runner.invoke(main, ["vae", "train", str(demo_folder), "--out", str(tmp_path / "c4"), "--features", "zz"] + tiny)
    assert r.exit_code == 2 and "features" in r.output and not (tmp_path / "c4" / "vae.pt").exists()

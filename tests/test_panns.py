"""PANNs Cnn14: official checkpoint layout, strict loading, front end against librosa, windowing.

The official weights are not on these machines: a random-weight state dict is built from the
published key/shape table (independent of our module), saved like the Zenodo files
(``{"iteration": ..., "model": state_dict}``) and loaded back via ``get_embedder("panns", weights=...)``.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from audiosim.engine.models import weights as wts  # noqa: E402
from audiosim.engine.models.embedders import get_embedder  # noqa: E402
from audiosim.engine.models.embedders.panns import CHECKPOINTS, resolve_panns_weights  # noqa: E402
from audiosim.engine.models.embedders.panns_model import (  # noqa: E402
    VARIANTS, Cnn14, LogmelFilterBank, Spectrogram, layout_problems)
from audiosim.errors import MissingDependencyError, WeightsFormatError, WeightsNotFoundError  # noqa: E402

CHANNELS = (64, 128, 256, 512, 1024, 2048)


def official_layout(n_fft: int) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of the 'model' entry of Cnn14_mAP=0.431.pth (n_fft 1024) and
    Cnn14_16k_mAP=0.438.pth (n_fft 512), as printed from the released files."""
    bins = n_fft // 2 + 1

    def bn(prefix, c):
        return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
                (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]

    keys = [("spectrogram_extractor.stft.conv_real.weight", (bins, 1, n_fft)),
            ("spectrogram_extractor.stft.conv_imag.weight", (bins, 1, n_fft)),
            ("logmel_extractor.melW", (bins, 64))] + bn("bn0", 64)
    cin = 1
    for i, c in enumerate(CHANNELS, 1):
        keys += [(f"conv_block{i}.conv1.weight", (c, cin, 3, 3)), (f"conv_block{i}.conv2.weight", (c, c, 3, 3))]
        keys += bn(f"conv_block{i}.bn1", c) + bn(f"conv_block{i}.bn2", c)
        cin = c
    return keys + [("fc1.weight", (2048, 2048)), ("fc1.bias", (2048,)),
                   ("fc_audioset.weight", (527, 2048)), ("fc_audioset.bias", (527,))]


def random_official_state(n_fft: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(n_fft):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(123456, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.startswith(("bn0.", "conv_block")) and key.endswith(".weight") and len(shape) == 1:
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif key.startswith(("spectrogram_extractor", "logmel_extractor")):
            state[key] = torch.randn(shape, generator=g).abs() if "melW" in key else torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return random_official_state(1024)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, official_state):
    path = tmp_path_factory.mktemp("panns") / "Cnn14_mAP=0.431.pth"
    # an iteration counter pickled as a numpy scalar, as training scripts often leave it
    torch.save({"iteration": np.int64(660000), "model": official_state}, path)
    return path


@pytest.fixture(scope="module")
def embedder(ckpt):
    return get_embedder("panns", weights=str(ckpt), window_s=1.0, hop_s=0.5)


def _wave(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------- layout and loading


@pytest.mark.parametrize("variant,n_fft", [("Cnn14", 1024), ("Cnn14_16k", 512)])
def test_state_dict_is_the_official_layout(variant, n_fft):
    with torch.device("meta"):
        model = Cnn14(VARIANTS[variant])
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert sorted(got) == sorted(official_layout(n_fft))
    assert sum(int(np.prod(s)) for _, s in got) == sum(int(np.prod(s)) for _, s in official_layout(n_fft))


def _functional_cnn14(sd: dict[str, torch.Tensor], x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """The published Cnn14 inference forward written with torch.nn.functional on the raw state dict."""
    x = F.pad(x[:, None, :], (n_fft // 2, n_fft // 2), mode="reflect")
    real = F.conv1d(x, sd["spectrogram_extractor.stft.conv_real.weight"], stride=hop)
    imag = F.conv1d(x, sd["spectrogram_extractor.stft.conv_imag.weight"], stride=hop)
    power = (real ** 2 + imag ** 2).transpose(1, 2)  # [B, T, bins]
    logmel = 10 * torch.log10(torch.clamp(power @ sd["logmel_extractor.melW"], min=1e-10))  # [B, T, 64]

    def bn(t, p, dim):
        shape = [1] * t.ndim
        shape[dim] = -1
        scale = sd[p + ".weight"] / torch.sqrt(sd[p + ".running_var"] + 1e-5)
        return (t - sd[p + ".running_mean"].view(shape)) * scale.view(shape) + sd[p + ".bias"].view(shape)

    h = bn(logmel, "bn0", 2)[:, None]  # normalise each mel band; [B, 1, T, 64]
    for i in range(1, 7):
        p = f"conv_block{i}"
        h = F.relu(bn(F.conv2d(h, sd[p + ".conv1.weight"], padding=1), p + ".bn1", 1))
        h = F.relu(bn(F.conv2d(h, sd[p + ".conv2.weight"], padding=1), p + ".bn2", 1))
        if i < 6:
            h = F.avg_pool2d(h, 2)
    h = h.mean(dim=3)
    h = h.max(dim=2).values + h.mean(dim=2)
    return F.relu(h @ sd["fc1.weight"].T + sd["fc1.bias"])


def test_checkpoint_loads_strictly_and_embeds_like_the_reference_forward(embedder, ckpt, official_state):
    info = embedder.info
    assert (info.name, info.dim, info.sample_rate, info.window_s, info.hop_s) == ("panns", 2048, 32000, 1.0, 0.5)
    assert info.version == "Cnn14/1s" and info.weights_sha256 == wts.sha256_file(ckpt)
    loaded = embedder.model.state_dict()
    assert set(loaded) == set(official_state)
    for k, v in official_state.items():
        assert torch.equal(loaded[k], v), k  # bit-exact
    x = _wave(1.0, 32000)
    frames, times = embedder.embed_frames(x)
    assert frames.shape == (1, 2048) and times.tolist() == [0.0]
    with torch.no_grad():
        ref = _functional_cnn14(official_state, torch.from_numpy(x)[None], 1024, 320)[0].numpy()
    np.testing.assert_allclose(frames[0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert (frames > 0).sum() > 100  # ReLU output of a live random network


def test_long_recordings_are_windowed_and_short_ones_embedded_whole(embedder):
    sr = 32000
    x = _wave(3.2, sr, seed=1)
    frames, times = embedder.embed_frames(x)
    np.testing.assert_allclose(times, [0.0, 0.5, 1.0, 1.5, 2.0])
    with torch.inference_mode():
        third = embedder.model(torch.from_numpy(x[sr: 2 * sr])[None])[0][0].numpy()
        whole_short = embedder.model(torch.from_numpy(x[: int(0.8 * sr)])[None])[0][0].numpy()
        padded = embedder.model(torch.from_numpy(np.pad(x[:3200], (0, 31 * 320 - 3200)))[None])[0][0].numpy()
    # the five windows ran as one batch: conv kernels sum in another order than for a single window
    np.testing.assert_allclose(frames[2], third, rtol=1e-4, atol=1e-4 * np.abs(third).max())
    np.testing.assert_array_equal(embedder.embed_frames(x[: int(0.8 * sr)])[0][0], whole_short)
    np.testing.assert_array_equal(embedder.embed_frames(x[:3200])[0][0], padded)
    assert embedder.options() == {"weights": embedder.options()["weights"], "variant": "Cnn14", "window_s": 1.0,
                                  "hop_s": 0.5}


def test_layout_problems_name_each_mismatch(official_state):
    with torch.device("meta"):
        model = Cnn14(VARIANTS["Cnn14"])
    assert layout_problems(model, official_state) == []
    bad = dict(official_state)
    bad["fc1.weight"] = torch.zeros(2048, 1024)
    del bad["bn0.num_batches_tracked"]
    bad["fc2.weight"] = torch.zeros(3)
    bad["fc1.bias"] = torch.zeros(2048, dtype=torch.float64)
    problems = layout_problems(model, bad)
    assert sorted(problems) == sorted([
        "missing bn0.num_batches_tracked", "unexpected fc2.weight",
        "fc1.weight: shape (2048, 1024), expected (2048, 2048)",
        "fc1.bias: dtype torch.float64, expected torch.float32"])


def test_wrong_or_truncated_files_are_clear_errors(ckpt, official_state, tmp_path):
    truncated = tmp_path / "Cnn14_mAP=0.431.pth"
    with open(ckpt, "rb") as src:
        truncated.write_bytes(src.read(1 << 20))
    with pytest.raises(WeightsFormatError, match="cannot be read as a PyTorch checkpoint.*truncated"):
        get_embedder("panns", weights=str(truncated))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(WeightsFormatError, match="cannot be read"):
        get_embedder("panns", weights=str(junk))
    partial = tmp_path / "partial.pth"
    torch.save({"model": {k: official_state[k] for k in list(official_state)[:8]}}, partial)
    with pytest.raises(WeightsFormatError, match="not match the official Cnn14 layout: missing conv_block1.conv1.weight"):
        get_embedder("panns", weights=str(partial))
    sixteen = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"model": {"spectrogram_extractor.stft.conv_real.weight": torch.zeros(257, 1, 512)}}, sixteen)
    with pytest.raises(WeightsFormatError, match="is a Cnn14_16k checkpoint .16000 Hz. but variant 'Cnn14'"):
        get_embedder("panns", weights=str(sixteen), variant="Cnn14")
    pickled_object = tmp_path / "object.pth"  # unpickling it would need more than tensors and plain data
    torch.save({"model": {"x": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, pickled_object)
    with pytest.raises(WeightsFormatError, match="cannot be read.*not plain tensors and data: .*argparse.Namespace"):
        get_embedder("panns", weights=str(pickled_object))
    with pytest.raises(WeightsFormatError, match="expected a PANNs checkpoint"):
        get_embedder("panns", weights=str(tmp_path / "does-not-exist.pth"))


def test_weight_resolution_order_and_official_download(ckpt, tmp_path, monkeypatch):
    models, cache = tmp_path / "models", tmp_path / "cache"
    for root in (models, cache):
        (root / "panns").mkdir(parents=True)
        os.symlink(ckpt, root / "panns" / "Cnn14_mAP=0.431.pth")
    monkeypatch.setenv("AUDIOSIM_MODELS", str(models))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(cache))
    assert resolve_panns_weights(None, variant=None) == models / "panns" / "Cnn14_mAP=0.431.pth"
    monkeypatch.delenv("AUDIOSIM_MODELS")
    assert resolve_panns_weights(None, variant="Cnn14") == cache / "panns" / "Cnn14_mAP=0.431.pth"
    with pytest.raises(WeightsNotFoundError, match="Cnn14_16k_mAP=0.438.pth.*--weights PATH"):
        resolve_panns_weights(None, variant="Cnn14_16k", allow_download=False)
    name, spec = CHECKPOINTS["Cnn14"]
    assert spec.url.startswith("https://zenodo.org/records/3987831/files/Cnn14_mAP%3D0.431.pth")
    assert (name, spec.filename, spec.md5) == ("Cnn14_mAP=0.431.pth", name, "541141fa2ee191a88f24a3219fff024e")
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match="device 'cuda' requested"):
            get_embedder("panns", weights=str(ckpt), device="cuda")


# ---------------------------------------------------------------- front end


@pytest.mark.parametrize("variant", ["Cnn14", "Cnn14_16k"])
def test_frontend_matches_librosa_melspectrogram(variant, request):
    """Measured max |difference| 2.3e-4 dB (float32 conv STFT vs librosa float64); asserted < 1e-3 dB."""
    import librosa

    cfg = VARIANTS[variant]
    spec = Spectrogram(cfg.window_size, cfg.hop_size)
    mel = LogmelFilterBank(cfg.sample_rate, cfg.window_size, cfg.mel_bins, cfg.fmin, cfg.fmax)
    waves = [_wave(2.0, cfg.sample_rate, seed=2), np.zeros(cfg.sample_rate // 2, np.float32)]
    if os.environ.get("ESC50_ROOT"):
        from audiosim.engine.audio.decode import load_audio

        clip = sorted(glob.glob(str(request.getfixturevalue("esc50_root") / "audio" / "*.ogg")))[250]
        waves.append(load_audio(clip, sample_rate=cfg.sample_rate))
    for x in waves:
        with torch.no_grad():
            ours = mel(spec(torch.from_numpy(x)[None]))[0, 0].numpy()
        power = librosa.feature.melspectrogram(
            y=x.astype(np.float64), sr=cfg.sample_rate, n_fft=cfg.window_size, hop_length=cfg.hop_size,
            win_length=cfg.window_size, window="hann", center=True, pad_mode="reflect", power=2.0,
            n_mels=cfg.mel_bins, fmin=cfg.fmin, fmax=cfg.fmax)
        ref = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T
        assert ours.shape == ref.shape == (1 + x.size // cfg.hop_size, 64)
        np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


# ---------------------------------------------------------------- classifier head (issue 14)


def test_fc_audioset_scores_per_window_with_the_audioset_names(embedder, official_state, tmp_path, ckpt):
    from audiosim.engine.models.embedders.audioset_classes import audioset_names
    from audiosim.engine.models.embedders.base import class_names_sha256

    x = _wave(3.2, 32000, seed=3)
    frames, times, scores = embedder.embed_frames_with_scores(x)
    f2, t2 = embedder.embed_frames(x)
    np.testing.assert_array_equal(frames, f2)
    np.testing.assert_array_equal(times, t2)
    assert scores.shape == (5, 527) and scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
    ref = torch.sigmoid(torch.from_numpy(frames) @ official_state["fc_audioset.weight"].T
                        + official_state["fc_audioset.bias"]).numpy()  # the head applied to the embeddings
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-5)
    names = embedder.class_names()
    assert names == audioset_names() and names[74] == "Dog" and embedder.class_map_sha256() == class_names_sha256(names)
    custom = tmp_path / "class_labels_indices.csv"
    custom.write_text("index,mid,display_name\n" + "".join(f'{i},/m/{i},"label, {i}"\n' for i in range(527)))
    other = get_embedder("panns", weights=str(ckpt), class_map=str(custom))
    assert other.class_names()[3] == "label, 3" and other.options()["class_map"] == str(custom)
    custom.write_text("one\ntwo\n")
    with pytest.raises(WeightsFormatError, match="names 2 classes but the model's classifier has 527 outputs"):
        get_embedder("panns", weights=str(ckpt), class_map=str(custom)).class_names()


def test_embed_batch_runs_windows_of_several_files_together_and_equals_each_file_alone(embedder, monkeypatch):
    sr = 32000
    waves = [_wave(3.2, sr, seed=1), _wave(0.8, sr, seed=2), _wave(1.7, sr, seed=3), _wave(0.1, sr, seed=4),
             _wave(0.8, sr, seed=5)]
    alone = [embedder.embed_frames_with_scores(w) for w in waves]
    passes = []
    run = embedder._run
    monkeypatch.setattr(embedder, "_run", lambda segs: passes.append(len(segs)) or run(segs))
    together = embedder.embed_batch(waves, scores=True)
    # one pass per window length: the 1 s windows of the 3.2 s and 1.7 s files (5 + 2), the two 0.8 s clips
    # (whole, same length), the 0.1 s clip (padded to the network's minimum)
    assert sorted(passes) == [1, 2, 7]
    assert embedder.BATCHES_WINDOWS
    for (f, t, s), (fa, ta, sa) in zip(together, alone):
        assert f.shape == fa.shape and f.dtype == np.float32
        np.testing.assert_array_equal(t, ta)
        np.testing.assert_allclose(f, fa, rtol=1e-4, atol=1e-4 * np.abs(fa).max())
        np.testing.assert_allclose(s, sa, rtol=1e-4, atol=1e-4)
    plain = embedder.embed_batch(waves[:2])
    assert len(plain) == 2 and len(plain[0]) == 2

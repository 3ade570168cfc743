"""Every registered embedder honours the same contract, and so does every installed plug-in.

Add a factory to FACTORIES when registering an embedder: a function (tmp_path_factory) -> Embedder,
building it with real weights when available or tiny random weights otherwise. Plug-ins (entry-point
group ``audiosim.embedders``) are built with no options: ``get_embedder(name)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.engine.models.embedders import EMBEDDERS, available_embedders, get_embedder, plugins
from audiosim.engine.models.embedders.base import Embedder


def _logmel(tmp_path_factory, request):
    return get_embedder("logmel")


def _yamnet(tmp_path_factory, request):
    return get_embedder("yamnet", weights=str(request.getfixturevalue("yamnet_tflite")))


def _panns(tmp_path_factory, request):
    """Random-weight Cnn14_16k saved in the official checkpoint format, loaded by the real path."""
    import torch

    from audiosim.engine.models.embedders.panns_model import VARIANTS, Cnn14

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("panns") / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"iteration": 0, "model": Cnn14(VARIANTS["Cnn14_16k"]).state_dict()}, path)
    return get_embedder("panns", weights=str(path), window_s=1.0, hop_s=1.0)


def _vggish(tmp_path_factory, request):
    """Random-weight VGGish written as a TF1 checkpoint with the official variable names."""
    import tensorflow as tf

    from audiosim.engine.models.embedders.vggish_model import VARIABLES

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("vggish") / "vggish_model.ckpt"
    scales = [np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) > 1 else 0.01 for _, shape in VARIABLES]  # He init
    data = [rng.standard_normal(shape, dtype=np.float32) * np.float32(s) for (_, shape), s in zip(VARIABLES, scales)]
    tf.raw_ops.Save(filename=str(path), tensor_names=[n for n, _ in VARIABLES], data=[tf.constant(d) for d in data])
    return get_embedder("vggish", weights=str(path))


def _vae(tmp_path_factory, request):
    """A tiny random-weight GLU-ConvVAE saved as a real checkpoint, loaded through the registry."""
    import torch

    from audiosim.engine.training.vae_data import MelConfig
    from audiosim.engine.models.vae.model import GLUConvVAE, VAEConfig, save_checkpoint

    torch.manual_seed(0)
    mel = MelConfig()
    model = GLUConvVAE(VAEConfig(n_mels=mel.n_mels, frames=mel.frames, channels=(4, 8, 8, 8), latent_dim=8)).eval()
    path = tmp_path_factory.mktemp("vae") / "vae.pt"
    save_checkpoint(path, model, mel=mel.to_dict(), norm={"mean": [-5.0] * mel.n_mels, "std": [3.0] * mel.n_mels})
    return get_embedder("vae", weights=str(path))


def _onnx(tmp_path_factory, request):
    """A tiny random strided-convolution encoder exported from torch to ONNX, with its sidecar."""
    import json

    import torch

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx")
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 400, stride=160), torch.nn.ReLU(), torch.nn.Conv1d(8, 16, 3)).eval()
    torch.onnx.export(net, (torch.zeros(2, 1, 16000),), str(d / "tiny.onnx"), dynamo=False, input_names=["audio"],
                      output_names=["emb"], dynamic_axes={"audio": {0: "b"}, "emb": {0: "b"}})
    (d / "tiny.json").write_text(json.dumps({"sample_rate": 16000, "window_s": 1.0, "hop_s": 0.5,
                                             "input": {"name": "audio", "layout": "BCT"},
                                             "output": {"name": "emb", "reduce": "mean"}}))
    return get_embedder("onnx", weights=str(d / "tiny.onnx"))


def _hf(tmp_path_factory, request):
    """A tiny random wav2vec2 snapshot saved offline with save_pretrained."""
    from hf_helpers import tiny_wav2vec2

    return get_embedder("hf", weights=str(tiny_wav2vec2(tmp_path_factory.mktemp("hf") / "w2v")), window_s=1.0, hop_s=0.5)


def _voice(tmp_path_factory, request):
    """The real GE2E speaker encoder from the resemblyzer wheel."""
    from audiosim.engine.models.embedders.voice import packaged_weights

    if packaged_weights() is None:
        pytest.skip("resemblyzer is not installed: pip install --no-deps resemblyzer (make install-test does)")
    return get_embedder("voice")


FACTORIES = {
    "logmel": _logmel,
    "yamnet": _yamnet,
    "panns": _panns,
    "vggish": _vggish,
    "vae": _vae,
    "onnx": _onnx,
    "hf": _hf,
    "voice": _voice,
}


def _plugin(tmp_path_factory, request):
    return get_embedder(request.param)


def test_every_registered_embedder_has_a_contract_factory():
    assert sorted(FACTORIES) == sorted(EMBEDDERS)
    assert available_embedders() == sorted({*FACTORIES, *plugins()})


@pytest.fixture(scope="module", params=sorted(FACTORIES) + sorted(plugins()))
def embedder(request, tmp_path_factory) -> Embedder:
    return FACTORIES.get(request.param, _plugin)(tmp_path_factory, request)


def _wave(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_info_is_complete(embedder):
    info = embedder.info
    assert info.name in available_embedders()
    assert info.sample_rate > 0 and info.dim > 0 and info.window_s > 0 and 0 < info.hop_s <= info.window_s
    assert isinstance(info.version, str) and info.version


def test_shape_dtype_finite_and_timestamps(embedder):
    sr = embedder.info.sample_rate
    frames, times = embedder.embed_frames(_wave(3.0, sr))
    assert frames.ndim == 2 and frames.shape[1] == embedder.info.dim and frames.shape[0] >= 2
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert times.shape == (frames.shape[0],)
    np.testing.assert_allclose(np.diff(times), embedder.info.hop_s, rtol=1e-6)
    assert times[0] == 0.0


def test_deterministic(embedder):
    w = _wave(2.0, embedder.info.sample_rate, seed=1)
    a, _ = embedder.embed_frames(w)
    b, _ = embedder.embed_frames(w)
    np.testing.assert_array_equal(a, b)


def test_batch_equals_single(embedder):
    sr = embedder.info.sample_rate
    waves = [_wave(1.5, sr, 2), _wave(3.2, sr, 3), _wave(0.2, sr, 4)]
    batch = embedder.embed_batch(waves)
    for w, (frames, times) in zip(waves, batch):
        f1, t1 = embedder.embed_frames(w)
        np.testing.assert_allclose(frames, f1, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(times, t1)


@pytest.mark.parametrize("n_samples", [0, 1, 160])
def test_subframe_clip_gives_one_frame(embedder, n_samples):
    frames, times = embedder.embed_frames(np.full(n_samples, 0.1, dtype=np.float32))
    assert frames.shape == (1, embedder.info.dim)
    assert np.isfinite(frames).all() and times.tolist() == [0.0]


def test_silence_is_finite(embedder):
    frames, _ = embedder.embed_frames(np.zeros(2 * embedder.info.sample_rate, dtype=np.float32))
    assert np.isfinite(frames).all()

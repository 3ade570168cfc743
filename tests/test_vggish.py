"""VGGish: official checkpoint layout, front end against independent references, PCA post-processing.

The official weights are not on these machines: a random-weight checkpoint with the official
variable names is written here (TF1 V1 single file, like the published ``vggish_model.ckpt``)
and loaded back through ``get_embedder("vggish", weights=...)``.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audiosim.engine.models import weights as wts  # noqa: E402
from audiosim.engine.models.embedders import get_embedder  # noqa: E402
from audiosim.engine.models.embedders.vggish import VggishPostprocessor, resolve_vggish_weights  # noqa: E402
from audiosim.engine.models.embedders.vggish_frontend import MIN_SAMPLES, VggishFrontend, mel_matrix  # noqa: E402
from audiosim.engine.models.embedders.vggish_model import VARIABLES  # noqa: E402
from audiosim.errors import WeightsFormatError, WeightsNotFoundError  # noqa: E402

SR = 16000

# The variables TF-Slim creates for vggish_slim.define_vggish_slim (slim.repeat names layers
# <scope>/<scope>_<i>), with their shapes: the layout of the published vggish_model.ckpt.
OFFICIAL = [
    ("vggish/conv1/weights", (3, 3, 1, 64)), ("vggish/conv1/biases", (64,)),
    ("vggish/conv2/weights", (3, 3, 64, 128)), ("vggish/conv2/biases", (128,)),
    ("vggish/conv3/conv3_1/weights", (3, 3, 128, 256)), ("vggish/conv3/conv3_1/biases", (256,)),
    ("vggish/conv3/conv3_2/weights", (3, 3, 256, 256)), ("vggish/conv3/conv3_2/biases", (256,)),
    ("vggish/conv4/conv4_1/weights", (3, 3, 256, 512)), ("vggish/conv4/conv4_1/biases", (512,)),
    ("vggish/conv4/conv4_2/weights", (3, 3, 512, 512)), ("vggish/conv4/conv4_2/biases", (512,)),
    ("vggish/fc1/fc1_1/weights", (12288, 4096)), ("vggish/fc1/fc1_1/biases", (4096,)),
    ("vggish/fc1/fc1_2/weights", (4096, 4096)), ("vggish/fc1/fc1_2/biases", (4096,)),
    ("vggish/fc2/weights", (4096, 128)), ("vggish/fc2/biases", (128,)),
]


def _random_official_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in OFFICIAL:
        scale = np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) > 1 else 0.05  # He init; visible biases
        out[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
    return out


def _save_v1(variables: dict[str, np.ndarray], path) -> None:
    """A TF1 V1 (single-file) checkpoint, the format of the published vggish_model.ckpt."""
    names = sorted(variables)
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=[tf.constant(variables[n]) for n in names])


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def official_weights() -> dict[str, np.ndarray]:
    return _random_official_weights()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, official_weights):
    path = tmp_path_factory.mktemp("vggish") / "vggish_model.ckpt"
    _save_v1(official_weights, path)
    return path


@pytest.fixture(scope="module")
def embedder(ckpt):
    return get_embedder("vggish", weights=str(ckpt))


# ---------------------------------------------------------------- layout and loading


def test_variable_table_is_the_official_layout():
    assert list(VARIABLES) == OFFICIAL


def _np_reference_forward(w: dict[str, np.ndarray], patch: np.ndarray) -> np.ndarray:
    """VGGish in float64 NumPy: 3x3 SAME convs + ReLU, 2x2 max-pools, NHWC flatten, fc1 x2 ReLU, fc2 linear."""

    def conv(x, scope):
        k, b = w[scope + "/weights"].astype(np.float64), w[scope + "/biases"]
        h, wd, _ = x.shape
        xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        cols = np.concatenate([xp[i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)
        out = cols.reshape(h * wd, -1) @ k.reshape(-1, k.shape[-1]) + b
        return np.maximum(out, 0.0).reshape(h, wd, -1)

    def pool(x):
        h, wd, c = x.shape
        return x.reshape(h // 2, 2, wd // 2, 2, c).max(axis=(1, 3))

    x = patch.astype(np.float64)[:, :, None]
    x = pool(conv(x, "vggish/conv1"))
    x = pool(conv(x, "vggish/conv2"))
    x = pool(conv(conv(x, "vggish/conv3/conv3_1"), "vggish/conv3/conv3_2"))
    x = pool(conv(conv(x, "vggish/conv4/conv4_1"), "vggish/conv4/conv4_2"))
    x = x.reshape(-1)
    for scope in ("vggish/fc1/fc1_1", "vggish/fc1/fc1_2"):
        x = np.maximum(x @ w[scope + "/weights"] + w[scope + "/biases"], 0.0)
    return x @ w["vggish/fc2/weights"] + w["vggish/fc2/biases"]


def test_official_checkpoint_loads_and_runs_the_reference_network(embedder, ckpt, official_weights):
    info = embedder.info
    assert (info.name, info.dim, info.sample_rate, info.window_s, info.hop_s) == ("vggish", 128, SR, 0.96, 0.96)
    assert info.version == "1/ckpt" and info.weights_sha256 == wts.sha256_file(ckpt)
    x = _wave(2.5)
    frames, times = embedder.embed_frames(x)
    assert frames.shape == (2, 128) and times.tolist() == [0.0, 0.96]
    ref = _np_reference_forward(official_weights, VggishFrontend().patches(x)[1])  # the second 0.96 s
    np.testing.assert_allclose(frames[1], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.abs(frames).max() > 0.1  # the random network is not dead


def test_v2_checkpoint_prefix_gives_identical_embeddings(embedder, official_weights, tmp_path):
    names = sorted(official_weights)
    prefix = tmp_path / "model.ckpt"
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(official_weights[n]) for n in names])
    assert (tmp_path / "model.ckpt.index").is_file()
    v2 = get_embedder("vggish", weights=str(prefix))
    x = _wave(2.0, seed=3)
    np.testing.assert_array_equal(v2.embed_frames(x)[0], embedder.embed_frames(x)[0])


def test_wrong_truncated_or_incomplete_checkpoints_are_clear_errors(ckpt, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(WeightsFormatError, match="not a readable TensorFlow checkpoint"):
        get_embedder("vggish", weights=str(junk))
    truncated = tmp_path / "vggish_model.ckpt"
    with open(ckpt, "rb") as src:
        truncated.write_bytes(src.read(1 << 20))
    with pytest.raises(WeightsFormatError, match="truncated"):
        get_embedder("vggish", weights=str(truncated))
    small = {n: np.zeros(s, np.float32) for n, s in OFFICIAL[:4]}  # conv1 and conv2 only
    small["vggish/conv2/biases"] = np.zeros(127, np.float32)
    partial = tmp_path / "partial.ckpt"
    _save_v1(small, partial)
    with pytest.raises(WeightsFormatError) as e:
        get_embedder("vggish", weights=str(partial))
    assert "missing vggish/conv3/conv3_1/weights" in str(e.value)
    assert "vggish/conv2/biases has shape (127,), expected (128,)" in str(e.value)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(WeightsFormatError, match="expected the VGGish checkpoint"):
        get_embedder("vggish", weights=str(empty_dir))


def test_weights_resolve_from_models_dir_before_the_cache(ckpt, tmp_path, monkeypatch):
    models, cache = tmp_path / "models", tmp_path / "cache"
    (models / "vggish").mkdir(parents=True)
    (cache / "vggish").mkdir(parents=True)
    os.symlink(ckpt, models / "vggish" / "vggish_model.ckpt")
    os.symlink(ckpt, cache / "vggish" / "vggish_model.ckpt")
    monkeypatch.setenv("AUDIOSIM_MODELS", str(models))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(cache))
    assert resolve_vggish_weights(None) == ("ckpt", str(models / "vggish" / "vggish_model.ckpt"))
    monkeypatch.delenv("AUDIOSIM_MODELS")
    assert resolve_vggish_weights(None) == ("ckpt", str(cache / "vggish" / "vggish_model.ckpt"))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "nothing"))
    with pytest.raises(WeightsNotFoundError, match="--weights PATH"):
        resolve_vggish_weights(None, allow_download=False)


def test_short_clips_are_padded_to_one_patch(embedder):
    for n in (0, 1, MIN_SAMPLES - 1, MIN_SAMPLES):
        frames, times = embedder.embed_frames(np.full(n, 0.1, np.float32))
        assert frames.shape == (1, 128) and times.tolist() == [0.0]
    assert embedder.embed_frames(np.zeros(MIN_SAMPLES + 96 * 160, np.float32))[0].shape == (2, 128)


# ---------------------------------------------------------------- TF-Hub backend


class _HubSignatureModel(tf.Module):
    """A SavedModel with the google/vggish/1 signature (waveform [None] -> [N, 128]). Its front end
    is built from tf.signal exactly as the official TF-Hub export builds it (magnitude STFT 400/160/512,
    tf.signal mel matrix, log(mel + 0.01), 96-frame patches); the 'network' is a fixed projection."""

    def __init__(self, projection: np.ndarray) -> None:
        super().__init__()
        self.projection = tf.Variable(projection)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform):
        magnitude = tf.abs(tf.signal.stft(waveform, frame_length=400, frame_step=160, fft_length=512))
        mel = tf.matmul(magnitude, tf.signal.linear_to_mel_weight_matrix(64, 257, SR, 125.0, 7500.0))
        patches = tf.signal.frame(tf.math.log(mel + 0.01), 96, 96, axis=0)
        return tf.matmul(tf.reduce_mean(patches, axis=1), self.projection)


def test_hub_backend_loads_a_local_savedmodel(tmp_path):
    projection = np.random.default_rng(5).standard_normal((64, 128)).astype(np.float32)
    export = tmp_path / "vggish_hub"
    tf.saved_model.save(_HubSignatureModel(projection), str(export))
    emb = get_embedder("vggish", weights=str(export))
    assert emb.backend == "hub" and emb.info.version == "1/hub"
    assert emb.info.weights_sha256 == wts.sha256_tree(export)
    x = _wave(3.0, seed=9)
    frames, times = emb.embed_frames(x)
    assert frames.shape == (3, 128) and np.allclose(times, [0.0, 0.96, 1.92])
    # the NumPy front end reproduces the TensorFlow one used by the TF-Hub model
    expected = VggishFrontend().patches(x).mean(axis=1) @ projection
    np.testing.assert_allclose(frames, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert emb.embed_frames(np.zeros(10, np.float32))[0].shape == (1, 128)


# ---------------------------------------------------------------- front end


def test_mel_matrix_is_htk_triangles_with_zero_dc():
    m = mel_matrix()
    assert m.shape == (257, 64) and np.all(m >= 0) and np.all(m[0] == 0)
    freqs = np.linspace(0, 8000, 257)
    assert freqs[np.nonzero(m[:, 0])[0][0]] >= 125.0 and freqs[np.nonzero(m[:, -1])[0][-1]] <= 7500.0
    assert np.all(m.max(axis=0) <= 1.0) and np.all(m.max(axis=0) > 0.5)  # unnormalised peaks near 1
    np.testing.assert_array_less(0, np.diff(m.argmax(axis=0)) + 1)  # band peaks move up in frequency


def test_frontend_matches_tensorflow_signal_float(esc50_root):
    """The TF-Hub VGGish computes its front end with tf.signal in float32: agreement to 1e-5 of the peak."""
    from audiosim.engine.audio.decode import load_audio

    fe = VggishFrontend()
    m_tf = tf.signal.linear_to_mel_weight_matrix(64, 257, SR, 125.0, 7500.0).numpy()
    np.testing.assert_allclose(fe.mel, m_tf, atol=1e-5)
    clip = sorted(glob.glob(str(esc50_root / "audio" / "*.ogg")))[0]
    for x in (load_audio(clip, sample_rate=SR), _wave(2.0, seed=4)):
        ours = fe.mel_spectrogram(x)
        theirs = tf.abs(tf.signal.stft(x, 400, 160, 512)).numpy() @ m_tf
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1e-5 * theirs.max()


def test_frontend_matches_yamnet_tflite_logmel_on_esc50(yamnet_tflite, esc50_root):
    """YAMNet's TFLite model outputs its own 64-band log-mel (same windowing and mel range, log offset
    0.001). That model is int8 dynamic-range quantised (its DFT/mel weights and, per call, its input
    are quantised), so exact agreement is impossible; measured on these 8 clips: linear mel error
    <= 1.3 % of the clip's peak band energy, median |delta log-mel| on non-silent frames <= 0.018,
    and a one-frame misalignment makes that median >= 16x larger. Asserted with margin: 5 %, 0.05, 4x."""
    from audiosim.engine.audio.decode import load_audio

    interp = tf.lite.Interpreter(model_path=str(yamnet_tflite))
    inp = interp.get_input_details()[0]["index"]
    out = {d["shape_signature"][-1]: d["index"] for d in interp.get_output_details()}[64]
    fe = VggishFrontend()
    clips = sorted(glob.glob(str(esc50_root / "audio" / "*.ogg")))[::250]
    assert len(clips) == 8
    for clip in clips:
        x = load_audio(clip, sample_rate=SR)
        interp.resize_tensor_input(inp, [x.size], strict=False)
        interp.allocate_tensors()
        interp.set_tensor(inp, x)
        interp.invoke()
        yam = interp.get_tensor(out).astype(np.float64)  # log(mel + 0.001), waveform padded at the end
        ours_mel = fe.mel_spectrogram(x)
        n = ours_mel.shape[0]
        assert yam.shape[0] >= n and yam.shape[1] == 64
        yam_mel = np.maximum(np.exp(yam[:n]) - 0.001, 0.0)
        assert np.abs(yam_mel - ours_mel).max() <= 0.05 * ours_mel.max(), clip
        ours_log, yam_log = fe.log_mel(x), np.log(yam_mel + 0.01)  # both with VGGish's offset 0.01
        active = ours_mel.max(axis=1) > 1e-3 * ours_mel.max()
        aligned = np.median(np.abs(yam_log - ours_log)[active])
        both = active[1:] & active[:-1]
        shifted = np.median(np.abs(yam_log[1:] - ours_log[:-1])[both])
        assert aligned <= 0.05 and shifted >= 4 * aligned, (clip, aligned, shifted)


# ---------------------------------------------------------------- PCA post-processing


def test_pca_postprocess_golden_values(vggish_pca_params):
    """Inputs built so that the PCA output is a chosen vector t; the official code maps
    clip(t, -2, 2) to uint8 by (t + 2) * 255 / 4 and truncates."""
    post = VggishPostprocessor(vggish_pca_params)
    assert post.sha256 == "4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d"
    # t:      -3 (clipped)  -1      -0.5     0.5      1       1.5      2.5 (clipped)
    # codes:   0            63.75   95.625   159.375  191.25  223.125  255   -> truncated
    t_values = np.array([-3.0, -1.0, -0.5, 0.5, 1.0, 1.5, 2.5])
    codes = np.array([0, 63, 95, 159, 191, 223, 255], dtype=np.uint8)
    t = np.resize(t_values, 128)
    e = post.means + np.linalg.solve(post.eigen_vectors, t)
    got = post(np.stack([post.means, e]))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0], np.full(128, 127, np.uint8))  # PCA output 0 -> 127.5 -> 127
    np.testing.assert_array_equal(got[1], np.resize(codes, 128))


def test_pca_params_wrong_file(tmp_path):
    bad = tmp_path / "vggish_pca_params.npz"
    np.savez(bad, pca_means=np.zeros(64), pca_eigen_vectors=np.eye(64))
    with pytest.raises(WeightsFormatError, match="expected"):
        VggishPostprocessor(bad)
    with pytest.raises(WeightsFormatError, match="not the VGGish PCA parameter file"):
        VggishPostprocessor(tmp_path / "missing.npz")


def test_pca8_option_postprocesses_every_frame(embedder, ckpt, vggish_pca_params):
    pca = get_embedder("vggish", weights=str(ckpt), postprocess="pca8", pca_params=str(vggish_pca_params))
    assert pca.info.version == "1/ckpt+pca8:4d878af3e306"
    assert pca.options() == {"weights": str(ckpt), "postprocess": "pca8", "pca_params": str(vggish_pca_params)}
    waves = [_wave(3.0, seed=1), _wave(1.0, seed=2)]
    for w in waves:
        frames, times = pca.embed_frames(w)
        raw, raw_times = embedder.embed_frames(w)
        expected = VggishPostprocessor(vggish_pca_params)(raw)
        np.testing.assert_array_equal(frames, expected.astype(np.float32))
        np.testing.assert_array_equal(times, raw_times)
        assert frames.dtype == np.float32 and frames.min() >= 0 and frames.max() <= 255

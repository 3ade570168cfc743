"""YAMNet: the real TFLite weights behave as documented; weight resolution order; the TF-Hub backend."""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.engine.models.embedders import get_embedder
from audiosim.engine.models.embedders.yamnet import resolve_yamnet_weights
from audiosim.errors import WeightsFormatError

SR = 16000


@pytest.fixture(scope="module")
def yamnet(yamnet_tflite):
    return get_embedder("yamnet", weights=str(yamnet_tflite))


def test_silence_scores_silence(yamnet, silence):
    names = yamnet.class_names()
    assert len(names) == 521
    assert names[int(yamnet.classify(silence).mean(axis=0).argmax())] == "Silence"


def test_sine_has_sine_wave_in_top10(yamnet, sine):
    names = yamnet.class_names()
    top10 = [names[i] for i in np.argsort(-yamnet.classify(sine).mean(axis=0))[:10]]
    assert "Sine wave" in top10, top10


def test_white_noise_top_class(yamnet, white_noise):
    names = yamnet.class_names()
    top3 = [names[i] for i in np.argsort(-yamnet.classify(white_noise).mean(axis=0))[:3]]
    assert "White noise" in top3, top3


def test_frame_count_and_info(yamnet, yamnet_tflite):
    frames, times = yamnet.embed_frames(np.zeros(5 * SR, np.float32))
    assert frames.shape == (10, 1024)  # 5 s -> 10 windows of 0.96 s at 0.48 s hop
    np.testing.assert_allclose(times, np.arange(10) * 0.48)
    from audiosim.engine.models.weights import sha256_file

    assert yamnet.info.weights_sha256 == sha256_file(yamnet_tflite) and yamnet.info.version == "1/tflite"


def test_resolution_order(tmp_path, monkeypatch, yamnet_tflite):
    models, cache = tmp_path / "models", tmp_path / "cache"
    (models / "yamnet").mkdir(parents=True)
    (cache / "yamnet").mkdir(parents=True)
    (models / "yamnet" / "yamnet.tflite").symlink_to(yamnet_tflite)
    (cache / "yamnet" / "yamnet.tflite").symlink_to(yamnet_tflite)
    monkeypatch.setenv("AUDIOSIM_MODELS", str(models))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(cache))
    assert resolve_yamnet_weights(None) == ("tflite", str(models / "yamnet" / "yamnet.tflite"))
    monkeypatch.delenv("AUDIOSIM_MODELS")
    assert resolve_yamnet_weights(None) == ("tflite", str(cache / "yamnet" / "yamnet.tflite"))
    # an explicit path beats both; a folder holding the file works too
    assert resolve_yamnet_weights(str(yamnet_tflite.parent)) == ("tflite", str(yamnet_tflite.parent / "yamnet.tflite"))
    with pytest.raises(WeightsFormatError, match="--weights"):
        resolve_yamnet_weights(str(tmp_path / "nothing-here.bin"))


def _tiny_yamnet_savedmodel(path):
    """A random-weight SavedModel with YAMNet's interface: waveform -> (scores, embeddings, log-mel)."""
    tf = pytest.importorskip("tensorflow")

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((64, 1024)).astype(np.float32) * 0.1)
            self.c = tf.Variable(rng.standard_normal((1024, 521)).astype(np.float32) * 0.1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            n = tf.shape(waveform)[0]
            n_patches = 1 + tf.maximum(0, (n - 15600 + 7679) // 7680)
            pad = (n_patches - 1) * 7680 + 15600 - n
            x = tf.pad(waveform, [[0, tf.maximum(pad, 0)]])
            frames = tf.signal.frame(x, 400, 160)
            spec = tf.math.log(tf.abs(tf.signal.rfft(frames))[:, :64] + 0.001)
            patches = tf.signal.frame(spec, 96, 48, axis=0)
            emb = tf.nn.relu(tf.reduce_mean(patches, axis=1) @ self.w)
            return tf.sigmoid(emb @ self.c), emb, spec

    tf.saved_model.save(Tiny(), str(path))


def test_hub_backend_with_a_local_savedmodel(tmp_path):
    pytest.importorskip("tensorflow_hub")
    sm = tmp_path / "yamnet_sm"
    _tiny_yamnet_savedmodel(sm)
    (sm / "assets").mkdir(exist_ok=True)
    (sm / "assets" / "yamnet_class_map.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},/m/{i},class {i}\n" for i in range(521)))
    emb = get_embedder("yamnet", weights=str(sm))
    assert emb.backend == "hub" and emb.info.version == "1/hub" and len(emb.info.weights_sha256) == 64
    frames, times = emb.embed_frames(np.random.default_rng(0).standard_normal(5 * SR).astype(np.float32) * 0.1)
    assert frames.shape == (10, 1024) and frames.dtype == np.float32
    np.testing.assert_allclose(times, np.arange(10) * 0.48)
    assert emb.embed_frames(np.zeros(100, np.float32))[0].shape == (1, 1024)
    assert emb.class_names()[3] == "class 3"


# ---------------------------------------------------------------- classifier head (issue 14), bad files (issue 11)


def test_scores_come_from_the_same_pass_as_the_embeddings(yamnet, sine):
    frames, times, scores = yamnet.embed_frames_with_scores(sine)
    f2, t2 = yamnet.embed_frames(sine)
    np.testing.assert_array_equal(frames, f2)
    np.testing.assert_array_equal(times, t2)
    assert scores.shape == (frames.shape[0], 521) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, yamnet.classify(sine))


def test_class_map_beside_weights_builtin_and_option(yamnet, yamnet_tflite, tmp_path):
    import csv

    from audiosim.engine.models.embedders.base import class_names_sha256

    with open(yamnet_tflite.parent / "yamnet_class_map.csv", newline="") as f:
        official = [row["display_name"] for row in csv.DictReader(f)]
    assert yamnet.class_names() == official
    assert yamnet.class_map_sha256() == class_names_sha256(official)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "yamnet.tflite").symlink_to(yamnet_tflite)  # no class map beside it: the built-in list
    assert get_embedder("yamnet", weights=str(alone / "yamnet.tflite")).class_names() == official
    custom = tmp_path / "names.txt"
    custom.write_text("".join(f"sound {i}\n" for i in range(521)))
    emb = get_embedder("yamnet", weights=str(yamnet_tflite), class_map=str(custom))
    assert emb.class_names()[7] == "sound 7" and emb.options()["class_map"] == str(custom)
    short = tmp_path / "short.csv"
    short.write_text("index,mid,display_name\n0,/m/x,Only one\n")
    with pytest.raises(WeightsFormatError, match="names 1 classes but the model's classifier has 521 outputs"):
        get_embedder("yamnet", weights=str(yamnet_tflite), class_map=str(short)).class_names()


def _has_tflite_runtime() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tensorflow"))


@pytest.mark.skipif(not _has_tflite_runtime(), reason="needs ai-edge-litert or TensorFlow to read .tflite files")
@pytest.mark.parametrize("content", [b"", b"\x13\x37" * 3000, b"TFL3" + bytes(range(256)) * 20])
def test_an_empty_or_random_tflite_is_a_weights_format_error(tmp_path, content):
    bad = tmp_path / "yamnet.tflite"
    bad.write_bytes(content)
    with pytest.raises(WeightsFormatError, match=r"yamnet\.tflite is not a readable TFLite model .*download it again"):
        get_embedder("yamnet", weights=str(bad))


def test_a_downloaded_tarball_is_unpacked_once_and_a_broken_model_folder_named(tmp_path, monkeypatch):
    import io
    import tarfile

    cache = tmp_path / "cache"
    (cache / "yamnet").mkdir(parents=True)
    monkeypatch.setenv("AUDIOSIM_CACHE", str(cache))
    monkeypatch.delenv("AUDIOSIM_MODELS", raising=False)
    (cache / "yamnet" / "saved_model").mkdir()  # an unpacking that stopped half-way: no saved_model.pb
    with pytest.raises(WeightsFormatError, match="saved_model is not a usable YAMNet model.*delete it"):
        resolve_yamnet_weights(None, allow_download=False)
    (cache / "yamnet" / "saved_model").rmdir()
    with tarfile.open(cache / "yamnet" / "yamnet_1.tar.gz", "w:gz") as tar:  # as TF-Hub serves it
        for name, data in (("saved_model.pb", b"pb"), ("assets/yamnet_class_map.csv", b"index,mid,display_name\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    backend, location = resolve_yamnet_weights(None, allow_download=False)
    assert (backend, location) == ("hub", str(cache / "yamnet" / "saved_model"))
    assert (cache / "yamnet" / "saved_model" / "saved_model.pb").read_bytes() == b"pb"
    assert resolve_yamnet_weights(None, allow_download=False) == ("hub", location)  # found, not unpacked again

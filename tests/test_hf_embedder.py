"""The ``hf`` embedder on tiny random snapshots built offline: vectors equal transformers' own, frame timing, pooling."""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.engine.models.embedders import get_embedder
from audiosim.errors import InvalidOptionError, NoTextEncoderError, WeightsFormatError, WeightsNotFoundError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'audiosim[models]')")

from hf_helpers import clap_feature_extractor, tiny_ast, tiny_clap, tiny_wav2vec2  # noqa: E402

SR = 16000


def _wave(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def _crops(x, window, hop):
    return [x[s:s + window] for s in range(0, x.size - window + 1, hop)]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    return {"ast": tiny_ast(d / "ast"), "w2v": tiny_wav2vec2(d / "w2v"),
            "hubert": tiny_wav2vec2(d / "hubert", model_type="hubert", seed=1), "clap": tiny_clap(d / "clap")}


def test_wav2vec2_window_means_of_hidden_states(snapshots):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    emb = get_embedder("hf", weights=str(snapshots["w2v"]), window_s=0.5, hop_s=0.25)
    assert (emb.info.window_s, emb.info.hop_s, emb.info.dim, emb.info.version) == (0.5, 0.25, 32, "wav2vec2/0.5s")
    x = _wave(1.3)
    frames, times = emb.embed_frames(x)
    crops = _crops(x, 8000, 4000)  # windows at 0, 0.25, 0.5, 0.75 s (full windows only)
    np.testing.assert_allclose(times, [0.0, 0.25, 0.5, 0.75])
    model = Wav2Vec2Model.from_pretrained(snapshots["w2v"]).eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(snapshots["w2v"])
    with torch.no_grad():
        ref = [model(fe(c, sampling_rate=SR, return_tensors="pt").input_values).last_hidden_state[0].mean(0).numpy()
               for c in crops]
    np.testing.assert_allclose(frames, np.stack(ref), rtol=1e-4, atol=1e-5)


def test_layer_option_pools_that_hidden_state(snapshots):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    emb = get_embedder("hf", weights=str(snapshots["w2v"]), window_s=0.5, layer=1)
    x = _wave(0.5, seed=2)
    frames, _ = emb.embed_frames(x)
    model = Wav2Vec2Model.from_pretrained(snapshots["w2v"]).eval()
    with torch.no_grad():
        inp = Wav2Vec2FeatureExtractor.from_pretrained(snapshots["w2v"])(x, sampling_rate=SR, return_tensors="pt")
        ref = model(inp.input_values, output_hidden_states=True).hidden_states[1][0].mean(0).numpy()
    np.testing.assert_allclose(frames[0], ref, rtol=1e-4, atol=1e-5)
    assert emb.info.version.endswith("/layer1") and emb.options()["layer"] == 1


def test_hubert_runs_and_short_clips_are_padded_to_the_receptive_field(snapshots):
    emb = get_embedder("hf", weights=str(snapshots["hubert"]))
    assert emb.info.version == "hubert/1s" and emb._min_samples == 10 + (8 - 1) * 5
    frames, times = emb.embed_frames(np.zeros(3, np.float32))
    assert frames.shape == (1, 32) and np.isfinite(frames).all() and times.tolist() == [0.0]


def test_ast_pooled_output_per_native_window(snapshots):
    from transformers import ASTFeatureExtractor, ASTModel

    emb = get_embedder("hf", weights=str(snapshots["ast"]))
    assert emb.info.window_s == 1.0 and emb.info.hop_s == 0.5 and emb.info.dim == 32  # 100 frames of 10 ms
    x = _wave(2.2, seed=3)
    frames, times = emb.embed_frames(x)
    np.testing.assert_allclose(times, [0.0, 0.5, 1.0])
    model = ASTModel.from_pretrained(snapshots["ast"]).eval()
    fe = ASTFeatureExtractor.from_pretrained(snapshots["ast"])
    with torch.no_grad():
        ref = [model(**fe(c, sampling_rate=SR, return_tensors="pt")).pooler_output[0].numpy() for c in _crops(x, SR, SR // 2)]
    np.testing.assert_allclose(frames, np.stack(ref), rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidOptionError, match="at most 1 s"):
        get_embedder("hf", weights=str(snapshots["ast"]), window_s=2.0)


def test_clap_audio_and_text_share_a_normalised_space(snapshots):
    from transformers import ClapModel

    from hf_helpers import tiny_tokenizer

    emb = get_embedder("hf", weights=str(snapshots["clap"]))
    assert emb.has_text_encoder and emb.info.dim == 16 and emb.info.window_s == 1.0
    x = _wave(1.5, seed=4)
    frames, _ = emb.embed_frames(x)
    model = ClapModel.from_pretrained(snapshots["clap"]).eval()
    with torch.no_grad():
        inp = clap_feature_extractor()(x[:SR], sampling_rate=SR, return_tensors="pt", truncation="rand_trunc")
        out = model.get_audio_features(**inp)
        ref = (out if torch.is_tensor(out) else out.pooler_output)[0].numpy()
        tok = tiny_tokenizer()(["a dog barking"], return_tensors="pt")
        tout = model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        tref = (tout if torch.is_tensor(tout) else tout.pooler_output)[0].numpy()
    np.testing.assert_allclose(frames[0], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(frames, axis=1), 1.0, rtol=1e-5)
    text = emb.embed_text(["a dog barking", "water dripping"])
    assert text.shape == (2, 16) and text.dtype == np.float32
    np.testing.assert_allclose(text[0], tref, rtol=1e-4, atol=1e-5)


def test_nothing_downloaded_and_errors_name_the_fix(snapshots, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="--weights DIR"):
        get_embedder("hf")
    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        get_embedder("hf", weights="laion/clap-htsat-unfused")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsFormatError, match="not a readable transformers audio snapshot"):
        get_embedder("hf", weights=str(tmp_path / "empty"))
    with pytest.raises(InvalidOptionError, match="layer"):
        get_embedder("hf", weights=str(snapshots["ast"]), layer=1)
    w2v = get_embedder("hf", weights=str(snapshots["w2v"]))
    with pytest.raises(NoTextEncoderError, match="CLAP"):
        w2v.embed_text("a dog")

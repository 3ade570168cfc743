"""Text-to-audio search with CLAP: a tiny CLAP trained in the test ranks the planted sound first for its
description through the library, the CLI, the HTTP API; collections without a text encoder say so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.search.library import open_collection
from audiosim.errors import AudiosimError, NoTextEncoderError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'audiosim[models]')")

from hf_helpers import clap_feature_extractor, save_clap, tiny_clap_model, tiny_tokenizer  # noqa: E402

SR = 16000
CAPTIONS = {"dog": "a dog barking", "bird": "a bird singing", "engine": "the engine humming", "water": "water dripping"}


def synthetic_sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """1 s of a synthetic stand-in for each kind: tone bursts, a warbling whistle, a square hum, clicks."""
    t = np.arange(SR) / SR
    if kind == "dog":
        x = ((t % 0.25) < 0.08) * np.sin(2 * np.pi * rng.uniform(550, 650) * t)
    elif kind == "bird":
        x = np.sin(2 * np.pi * (3000 + 800 * np.sin(2 * np.pi * 6 * t + rng.uniform(0, 6))) * t)
    elif kind == "engine":
        x = 0.5 * np.sign(np.sin(2 * np.pi * (60 + rng.uniform(-5, 5)) * t))
    else:
        x = rng.standard_normal(SR) * ((t % 0.3) < 0.02)
    return (0.5 * x + 0.01 * rng.standard_normal(SR)).astype(np.float32)


def train_tiny_clap(*, variants: int = 6, steps: int = 150):
    """A tiny random CLAP taught the four captions: the audio tower stays random (its batch norms calibrated on
    the training clips), the audio projection, text tower and text projection learn a contrastive loss."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = tiny_clap_model()
    fe, tok = clap_feature_extractor(), tiny_tokenizer()
    kinds = list(CAPTIONS)
    text = tok([CAPTIONS[k] for k in kinds], padding=True, return_tensors="pt")
    waves = [synthetic_sound(k, rng) for _ in range(variants) for k in kinds]
    with torch.no_grad():
        audio = fe(waves, sampling_rate=SR, return_tensors="pt", truncation="rand_trunc")
        for m in model.audio_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
                m.reset_running_stats()
                m.train()
        model.audio_model(input_features=audio.input_features, is_longer=audio.is_longer)
        model.audio_model.eval()
        feats = model.audio_model(input_features=audio.input_features, is_longer=audio.is_longer).pooler_output
    labels = torch.arange(len(kinds)).repeat(variants)
    params = [*model.audio_projection.parameters(), *model.text_model.parameters(), *model.text_projection.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    model.text_model.train()
    for _ in range(steps):
        a = torch.nn.functional.normalize(model.audio_projection(feats), dim=-1)
        t = model.text_projection(model.text_model(input_ids=text.input_ids, attention_mask=text.attention_mask).pooler_output)
        loss = torch.nn.functional.cross_entropy(10.0 * a @ torch.nn.functional.normalize(t, dim=-1).T, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return save_clap(train_tiny_clap(), tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="module")
def clap_collection(clap_dir, tmp_path_factory):
    """Fresh clips (not those trained on): one dog, the planted match, among three each of the other kinds."""
    folder = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(42)
    sf.write(folder / "dog_0.wav", synthetic_sound("dog", rng), SR)
    for n in range(3):
        for kind in ("bird", "engine", "water"):
            sf.write(folder / f"{kind}_{n}.wav", synthetic_sound(kind, rng), SR)
    coll = tmp_path_factory.mktemp("coll") / "c"
    index_folder(folder, coll, embedder="hf", weights=str(clap_dir), pooling="mu", flush_every=64)
    return coll


def test_text_search_ranks_the_planted_match_first(clap_collection):
    searcher = open_collection(clap_collection).searcher()
    dog = searcher.search(text="a dog barking", k=10)
    assert dog[0].path.endswith("/dog_0.wav") and [h.rank for h in dog] == list(range(1, 11))
    assert dog[0].score > dog[1].score
    for kind, caption in CAPTIONS.items():  # each description's best hits are sounds of its kind
        hits = searcher.search(text=caption, k=3 if kind != "dog" else 1)
        assert {_kind(h) for h in hits} == {kind}, (caption, hits)
    batch = searcher.search(text=["a dog barking", "a bird singing"], k=1)
    assert [_kind(r[0]) for r in batch] == ["dog", "bird"]


def _kind(hit) -> str:
    return hit.path.rsplit("/", 1)[1].split("_")[0]


def test_text_query_vector_is_the_clap_text_embedding(clap_collection, clap_dir):
    from audiosim.engine.models.embedders import get_embedder

    searcher = open_collection(clap_collection).searcher()
    text = get_embedder("hf", weights=str(clap_dir)).embed_text(["water dripping"])[0]
    by_text = searcher.search(text="water dripping", k=5)
    by_vector = searcher.search(vector=text, k=5)
    assert [h.id for h in by_text] == [h.id for h in by_vector]
    np.testing.assert_allclose([h.score for h in by_text], [h.score for h in by_vector], rtol=1e-5)


def test_cli_query_text(clap_collection):
    from click.testing import CliRunner

    from audiosim.cli import main

    r = CliRunner().invoke(main, ["query", "--collection", str(clap_collection), "--text", "the engine humming",
                                  "-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["queries"][0]["query"] == "text the engine humming"
    assert doc["queries"][0]["results"][0]["path"].rsplit("/", 1)[1].startswith("engine_")
    r = CliRunner().invoke(main, ["query", "--collection", str(clap_collection), "--text", "x", "--id", "0"])
    assert r.exit_code == 2 and "one kind of query" in r.output


def test_http_text_search(clap_collection):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from audiosim.service import ServeConfig, create_app

    app = create_app(ServeConfig(collections=(("clap", clap_collection),), warm=False))
    name = "clap"
    with TestClient(app) as client:
        r = client.post(f"/api/collections/{name}/search", json={"text": "a bird singing", "k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"] == {**body["query"], "kind": "text", "text": "a bird singing"}
        assert body["hits"][0]["file_name"].startswith("bird_")
        r = client.post(f"/api/collections/{name}/search", json={"text": "   "})
        assert r.status_code == 400 and "text" in r.text


def test_collection_without_text_encoder_says_so(demo_folder, tmp_path):
    coll = tmp_path / "logmel"
    index_folder(demo_folder, coll, embedder="logmel")
    searcher = open_collection(coll).searcher()
    with pytest.raises(NoTextEncoderError, match="no text encoder.*CLAP"):
        searcher.search(text="a dog barking")
    with pytest.raises(AudiosimError, match="non-empty description"):
        searcher.search(text=" ")
    from click.testing import CliRunner

    from audiosim.cli import main

    r = CliRunner().invoke(main, ["query", "--collection", str(coll), "--text", "a dog barking"])
    assert r.exit_code == 2 and "no text encoder" in r.output and "Traceback" not in r.output

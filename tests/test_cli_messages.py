"""What the command line says to a new user (issue 21): errors that name a fix the command takes, readable tags,
clean decode errors, plurals, one JSON shape for ``query`` and its CSV export.

Every collection here is made from synthetic audio (``write_demo_folder``) with the weight-free ``logmel``
embedder, or built directly in the store with a ``yamnet`` embedder record when only the error path is tested.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiosim.cli import main
from audiosim.commands.common import plural
from audiosim.commands.query import tag_lines
from audiosim.engine.audio.decode import load_audio
from audiosim.engine.models.embedders.base import EmbedderInfo
from audiosim.engine.models.embedders.yamnet import resolve_yamnet_weights
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.models.tags import SharedTag, Tag
from audiosim.engine.store.store import CollectionStore, Rows
from audiosim.errors import AudioDecodeError

ROOT = Path(__file__).resolve().parents[1]


def run(*args, ok=True):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """The synthetic demo folder (4 clips of each of 5 kinds) indexed with logmel."""
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("messages")
    folder = base / "synthetic"
    write_demo_folder(folder, per_kind=4, seed=7)
    coll = base / "coll"
    run("index", folder, "--collection", coll, "--embedder", "logmel", "--quiet")
    return folder, coll


# ---------------------------------------------------------------- item 7: query's missing-weights error
def test_query_missing_weights_error_names_query_options_not_embedder(tmp_path, monkeypatch, demo_folder):
    coll = CollectionStore.create(tmp_path / "y", embedder=EmbedderInfo(name="yamnet", version="1/tflite", sample_rate=16000,
                                                                   dim=4, window_s=0.96, hop_s=0.48),
                             pooling=PoolingSpec.parse("mu"))
    coll.append(Rows(path=["/a.wav"], content_sha256=["0" * 64], offset_s=np.zeros(1), duration_s=np.ones(1),
                     label=[None], embedding=np.ones((1, 4), np.float32)))
    monkeypatch.delenv("AUDIOSIM_MODELS", raising=False)
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    r = run("query", next(demo_folder.rglob("*.wav")), "--collection", coll.root, ok=False)
    assert r.exit_code == 2
    assert "--embedder" not in r.output  # query takes no --embedder: the collection's vectors fix the model
    assert "query --weights PATH" in r.output and "indexed with yamnet" in r.output
    assert "AUDIOSIM_MODELS" in r.output and str(tmp_path / "cache") in r.output


# ---------------------------------------------------------------- item 8: AUDIOSIM_MODELS at the yamnet/ folder
def test_models_env_may_point_at_the_model_folder_itself(tmp_path, monkeypatch):
    own = tmp_path / "yamnet"
    own.mkdir()
    (own / "yamnet.tflite").write_bytes(b"stand-in: only the file lookup is tested")
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    for env in (tmp_path, own):  # the folder holding yamnet/, and yamnet/ itself
        monkeypatch.setenv("AUDIOSIM_MODELS", str(env))
        assert resolve_yamnet_weights(None) == ("tflite", str(own / "yamnet.tflite"))


def test_real_yamnet_found_with_models_env_at_its_folder(yamnet_tflite, monkeypatch):
    monkeypatch.setenv("AUDIOSIM_MODELS", str(yamnet_tflite.parent))
    assert resolve_yamnet_weights(None) == ("tflite", str(yamnet_tflite))


def test_demo_fallback_message_names_the_paths_and_the_fix(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    monkeypatch.setenv("AUDIOSIM_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    name, why = demo.pick_embedder()
    assert name == "logmel"
    assert "WeightsNotFoundError" not in why and "--embedder logmel" not in why  # the demo already uses it
    for needle in (str(tmp_path / "models" / "yamnet"), str(tmp_path / "cache"), "AUDIOSIM_MODELS", "--weights",
                   "make demo"):
        assert needle in why, (needle, why)


# ---------------------------------------------------------------- item 9: one JSON shape, CSV export
def test_query_json_has_one_shape_for_one_or_several_clips(indexed):
    folder, coll = indexed
    a, b = folder / "chirp" / "chirp_01.flac", sorted((folder / "hum").iterdir())[0]
    one = json.loads(run("query", a, "--collection", coll, "-k", "3", "--json").output)
    two = json.loads(run("query", a, b, "--collection", coll, "-k", "3", "--json").output)
    by_id = json.loads(run("query", "--id", "0", "--collection", coll, "-k", "3", "--json").output)
    for doc, n in ((one, 1), (two, 2), (by_id, 1)):
        assert set(doc) == {"metric", "queries"} and len(doc["queries"]) == n
        assert all(set(q) == {"query", "results"} and len(q["results"]) == 3 for q in doc["queries"])
    assert one["queries"][0]["query"] == str(a) and one["queries"][0]["results"][0]["path"] == str(a)
    assert two["queries"][1]["query"] == str(b) and by_id["queries"][0]["query"] == "id 0"


def test_query_csv_export_to_a_file_and_to_stdout(indexed, tmp_path):
    folder, coll = indexed
    a, b = folder / "chirp" / "chirp_01.flac", folder / "tone" / "tone_00.wav"
    out = tmp_path / "hits.csv"
    table = run("query", a, b, "--collection", coll, "-k", "4", "--csv", out).output
    assert table.splitlines()[1].split()[:1] == ["rank"]  # the table still prints
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["query", "rank", "score", "id", "label", "path", "start_s", "end_s", "segments", "tags"]
    assert [r["query"] for r in rows] == [str(a)] * 4 + [str(b)] * 4
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4] * 2
    assert rows[0]["path"] == str(a) and float(rows[0]["score"]) == pytest.approx(1.0, abs=1e-5)
    assert float(rows[0]["start_s"]) == 0.0 and float(rows[0]["end_s"]) > 0 and rows[0]["segments"] == "1"
    doc = json.loads(run("query", a, b, "--collection", coll, "-k", "4", "--json").output)
    want = [(q["query"], h["id"], h["label"]) for q in doc["queries"] for h in q["results"]]
    assert [(r["query"], int(r["id"]), r["label"]) for r in rows] == want
    printed = run("query", a, "--collection", coll, "-k", "2", "--csv", "-").output
    assert list(csv.DictReader(io.StringIO(printed)))[1]["rank"] == "2" and "rank  " not in printed
    r = run("query", a, "--collection", coll, "--csv", "-", "--json", ok=False)
    assert r.exit_code == 2 and "--csv FILE" in r.output


# ---------------------------------------------------------------- item 11: tags readable
def test_tags_print_with_a_separator_that_names_do_not_contain():
    class FakeHit:
        tags = (Tag("Speech", 0, 1.0), Tag("Narration, monologue", 3, 0.0123), Tag("Inside, small room", 500, 0.006))
        shared_tags = (SharedTag("Speech", 0, 0.9, 1.0), SharedTag("Narration, monologue", 3, 0.2, 0.01))

    assert tag_lines(FakeHit()) == ["tags: Speech (1.00); Narration, monologue (0.01); Inside, small room (0.01)",
                                    "shared with the query: Speech; Narration, monologue"]

    class Untagged:
        tags, shared_tags = (), ()

    assert tag_lines(Untagged()) == []


# ---------------------------------------------------------------- item 15: a clean decode error
def test_decode_error_is_one_clean_sentence(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("hello, this is not audio")
    with pytest.raises(AudioDecodeError) as e:
        load_audio(bad, sample_rate=16000)
    msg = str(e.value)
    assert msg.startswith(f"cannot decode {bad}: not a readable audio file (libsndfile: format not recognised; audioread: ")
    assert ".;" not in msg and ": ." not in msg and ": )" not in msg and "Error opening" not in msg
    assert msg.endswith("or convert it, e.g. ffmpeg -i INPUT output.wav")


# ---------------------------------------------------------------- item 16: plurals
def test_plural():
    assert [plural(n, "vector") for n in (0, 1, 2)] == ["0 vectors", "1 vector", "2 vectors"]
    assert plural(1, "part") == "1 part" and plural(3, "index", "indexes") == "3 indexes"


def test_delete_and_info_count_in_words(indexed, tmp_path):
    import shutil

    folder, coll = indexed
    mine = tmp_path / "coll"
    shutil.copytree(coll, mine)
    r = run("delete", "--collection", mine, "--path", folder / "chirp" / "chirp_01.flac")
    assert r.output.startswith("removed 1 vector; collection now holds 19 vectors")
    assert "vectors      20 from 20 files in 1 part (revision" in run("info", "--collection", coll).output

"""Duplicates (issue 23, items 3 and 5): identical files by hash, near-duplicates from the neighbour graph checked by their audio.

Proves: on generated copies (re-encoded FLAC/MP3, resampled 44.1 kHz, trimmed 0.3 s, +6 dB, faint noise) of
synthetic sounds among other synthetic sounds, every copy lands in its original's group, verified by
its audio, and no two different sounds share a group at the default threshold (verified, and
vector-only); byte-identical files are grouped by their stored sha256 with no vector searched and
no audio compared; a one-file collection has no groups; the neighbour graph equals a brute-force
oracle; the CLI's text, JSON and CSV outputs and --no-verify; the HTTP endpoint.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.engine.audio import synth
from audiosim.engine.audio.decode import resample
from audiosim.engine.search.dedup import DEFAULT_THRESHOLD, find_duplicates
from audiosim.indexes.graph import components, similar_pairs

SR = 16000


@pytest.fixture(scope="module")
def copies(tmp_path_factory, yamnet_tflite):
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("dups") / "f"
    folder.mkdir()
    sounds = {
        "chirp": synth.chirp(f0=300, f1=5000, duration_s=4.0, rng=rng),
        "clicks": synth.clicks(rate_hz=6, duration_s=4.0, rng=rng),
        "hum": synth.machine_hum(duration_s=4.0, rng=rng),
        "tone": synth.tone(freq=880, duration_s=4.0, harmonics=4),
        "pink": synth.noise(duration_s=4.0, color="pink", rng=rng),
        "brown": synth.noise(duration_s=4.0, color="brown", rng=rng),
        "sweep": (0.6 * synth.chirp(f0=3000, f1=200, duration_s=4.0, rng=rng)
                  + 0.3 * synth.noise(duration_s=4.0, color="pink", rng=rng)).astype(np.float32),
    }
    for name, x in sounds.items():
        sf.write(folder / f"{name}.wav", x, SR)
    x = sounds["chirp"]
    sf.write(folder / "chirp_copy.flac", x, SR)  # re-encoded, bit-identical samples
    buf = io.BytesIO()
    sf.write(buf, sounds["sweep"], SR, format="MP3", subtype="MPEG_LAYER_III")
    (folder / "sweep_copy.mp3").write_bytes(buf.getvalue())
    sf.write(folder / "clicks_44k.wav", resample(sounds["clicks"], orig_sr=SR, target_sr=44100), 44100)
    sf.write(folder / "hum_trim.wav", sounds["hum"][int(0.3 * SR):], SR)
    sf.write(folder / "tone_loud.wav", np.clip(sounds["tone"] * 2.0, -1, 1), SR)
    sf.write(folder / "pink_noisy.wav", sounds["pink"] + 0.003 * rng.standard_normal(x.size).astype(np.float32), SR)
    shutil.copy(folder / "brown.wav", folder / "brown_same_bytes.wav")
    coll = folder.parent / "coll"
    audiosim.index_folder(folder, coll, embedder="yamnet", weights=yamnet_tflite, label_from="none")
    return folder, coll


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".")[0].split("_")[0]


def test_every_copy_is_found_and_no_false_pair_at_the_default_threshold(copies):
    _, coll = copies
    report = audiosim.open_collection(coll).duplicates()
    assert report.verify and report.verification.compared_pairs >= 6 and report.verification.unreadable_files == 0
    near = [g for g in report.groups if g.kind == "near"]
    assert all(m.basis == "content" and m.similarity >= DEFAULT_THRESHOLD for g in near for m in g.members)
    found = {frozenset(m.path.rsplit("/", 1)[-1] for m in g.members) for g in near}
    assert all(len({_stem(m.path) for m in g.members}) == 1 for g in report.groups), found  # no false pair
    for copy in ("chirp_copy.flac", "sweep_copy.mp3", "clicks_44k.wav", "hum_trim.wav", "tone_loud.wav", "pink_noisy.wav"):
        assert any(copy in g and f"{_stem(copy)}.wav" in g for g in found), (copy, found)
    identical = [g for g in report.groups if g.kind == "identical"]
    assert [sorted(m.path.rsplit("/", 1)[-1] for m in g.members) for g in identical] == [["brown.wav", "brown_same_bytes.wav"]]


def test_vector_only_finds_no_false_pair_either(copies):
    _, coll = copies
    report = find_duplicates(audiosim.open_collection(coll), verify=False)
    assert not report.verify and report.verification is None
    assert all(len({_stem(m.path) for m in g.members}) == 1 for g in report.groups)
    assert all(m.basis == "vector" for g in report.groups if g.kind == "near" for m in g.members)


def test_identical_files_are_grouped_by_hash_alone_and_one_item_has_no_groups(copies, tmp_path, monkeypatch):
    from audiosim.engine.search import dedup
    from audiosim.indexes.graph import empty_pairs

    folder, coll = copies
    searched = []
    monkeypatch.setattr(dedup, "neighbour_pairs", lambda X, **kw: searched.append(X.shape) or empty_pairs())
    compared = []
    real_check = dedup.check_pairs
    monkeypatch.setattr(dedup, "check_pairs", lambda s, i, j, **kw: compared.append(len(i)) or real_check(s, i, j, **kw))
    report = audiosim.open_collection(coll).duplicates()  # no vector neighbour found, no audio compared ...
    assert [g.kind for g in report.groups] == ["identical"]  # ... identical bytes are grouped by their sha256 all the same
    assert [m.basis for m in report.groups[0].members] == ["sha256", "sha256"]
    assert searched == [(13, 1024)] and compared == [0]  # identical files: one content in the graph; no audio compared
    monkeypatch.undo()
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(folder / "tone.wav", one / "tone.wav")
    audiosim.index_folder(one, tmp_path / "c1", embedder="logmel")
    assert audiosim.open_collection(tmp_path / "c1").duplicates().groups == ()


def test_the_neighbour_graph_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    X = np.concatenate([base, base[:10] + 0.05 * rng.standard_normal((10, 16)).astype(np.float32)])
    pairs = similar_pairs(X, threshold=0.9, k=5, block=7, device="cpu")
    N = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = N @ N.T
    want = {(i, j) for i in range(50) for j in range(i + 1, 50) if S[i, j] >= 0.9}
    assert set(zip(pairs.i.tolist(), pairs.j.tolist())) == want
    np.testing.assert_allclose(pairs.similarity, S[pairs.i, pairs.j], rtol=1e-5)
    comps = components(50, pairs.i, pairs.j)
    assert sorted(tuple(c.tolist()) for c in comps) == [(i, i + 40) for i in range(10)]
    # mutual: only pairs that are each other's nearest neighbour (brute force)
    np.fill_diagonal(S, -np.inf)
    nn = S.argmax(axis=1)
    mutual = similar_pairs(X, threshold=-1.0, k=5, block=7, device="cpu", mutual=1)
    assert set(zip(mutual.i.tolist(), mutual.j.tolist())) == {(i, int(nn[i])) for i in range(50) if nn[nn[i]] == i and i < nn[i]}


def test_dedup_command_text_json_csv(copies):
    _, coll = copies
    r = CliRunner().invoke(main, ["dedup", "--collection", str(coll)])
    assert r.exit_code == 0 and "near-duplicates" in r.output and "identical" in r.output
    d = json.loads(CliRunner().invoke(main, ["dedup", "--collection", str(coll), "--json"]).output)
    assert d["files"] == 14 and d["identical_groups"] == 1 and d["near_groups"] >= 5
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, ["dedup", "--collection", str(coll), "--csv"]).output)))
    assert {r["kind"] for r in rows} == {"identical", "near"} and all(r["path"] for r in rows)
    assert {r["basis"] for r in rows} == {"sha256", "content"}
    plain = json.loads(CliRunner().invoke(main, ["dedup", "--collection", str(coll), "--json", "--no-verify"]).output)
    assert plain["verify"] is False and "candidate_pairs" not in plain and plain["identical_groups"] == 1
    assert d["verify"] is True and d["compared_pairs"] >= 6 and d["unreadable_files"] == 0
    bad = CliRunner().invoke(main, ["dedup", "--collection", str(coll), "--threshold", "nan"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_duplicates_endpoint_lists_groups_with_players(copies):
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from audiosim.service import ServeConfig, create_app

    _, coll = copies
    with TestClient(create_app(ServeConfig(collections=(("dups", coll),), warm=False))) as c:
        r = c.get("/api/collections/dups/duplicates")
        assert r.status_code == 200
        d = r.json()
        assert d["collection"] == "dups" and d["identical_groups"] == 1 and d["near_groups"] >= 5
        member = d["duplicates"][0]["members"][0]
        audio = c.get(member["audio_url"])
        assert audio.status_code == 200 and audio.content[:4] in (b"RIFF", b"fLaC", b"OggS")
        assert c.get("/api/collections/dups/duplicates", params={"threshold": 3}).status_code == 422
        paths = [m["path"] for g in d["duplicates"] for m in g["members"]]
        assert paths and not any(p.startswith("/") or str(coll) in p for p in paths), paths  # no server paths
        vec = c.get("/api/collections/dups/duplicates", params={"verify": "false"}).json()
        assert vec["verify"] is False and {m["basis"] for g in vec["duplicates"] for m in g["members"]} <= {"sha256", "vector"}
    import audiosim

    api = audiosim.open_collection(coll).duplicates(verify=False)  # the Python API passes verify= through
    assert api.verify is False and api.to_dict()["near_groups"] == vec["near_groups"]


def test_the_inverted_file_graph_finds_planted_near_copies(monkeypatch):
    from audiosim.indexes import graph

    monkeypatch.setattr(graph, "EXACT_MAX", 100)  # force the IVF path on a small set
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1500, 32)).astype(np.float32)
    X[1400:] = X[:100] + 0.05 * rng.standard_normal((100, 32)).astype(np.float32)
    pairs = graph.similar_pairs(X, threshold=0.95, k=5, device="cpu", mutual=1)
    assert set(zip(pairs.i.tolist(), pairs.j.tolist())) == {(i, 1400 + i) for i in range(100)}


def test_the_projected_inverted_file_graph_returns_exact_similarities(monkeypatch):
    from audiosim.indexes import graph

    monkeypatch.setattr(graph, "EXACT_MAX", 100)  # force the IVF path, on vectors wider than PCA_DIM
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2000, 2 * graph.PCA_DIM)).astype(np.float32)
    X[1900:] = X[:100] + 0.1 * rng.standard_normal((100, X.shape[1])).astype(np.float32)
    pairs = graph.similar_pairs(X, threshold=0.9, k=5, device="cpu", mutual=1)
    assert set(zip(pairs.i.tolist(), pairs.j.tolist())) == {(i, 1900 + i) for i in range(100)}
    N = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(pairs.similarity, (N[pairs.i] * N[pairs.j]).sum(axis=1), rtol=1e-5)

"""The core slice end to end: index a folder, query by example, incremental runs, bad files, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiosim.cli import main
from audiosim.engine.models.embedders import get_embedder
from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.audio.scan import scan_folder
from audiosim.engine.store.store import CollectionStore
from audiosim.errors import WeightsNotFoundError


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def index_json(folder, coll, *extra):
    r = run("index", folder, "--collection", coll, "--embedder", "logmel", "--json", "--quiet", *extra)
    return json.loads(r.output)


def test_index_then_query_ranks_same_kind_first(demo_folder, tmp_path):
    coll = tmp_path / "coll"
    summary = index_json(demo_folder, coll)
    assert summary["embedded"] == 20 and summary["failed"] == 0 and summary["vectors"] == 20
    hits = json.loads(run("query", demo_folder / "chirp" / "chirp_00.wav", "--collection", coll, "-k", "4", "--json").output)
    results = hits["queries"][0]["results"]
    assert results[0]["path"].endswith("chirp_00.wav") and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    for kind in ("tone", "chirp", "noise", "clicks", "hum"):
        q = sorted((demo_folder / kind).iterdir())[1]
        res = json.loads(run("query", q, "--collection", coll, "-k", "4", "--json").output)["queries"][0]["results"]
        assert [h["label"] for h in res[:3]] == [kind] * 3, (kind, res)
    text = run("query", demo_folder / "hum" / "hum_02.ogg", "--collection", coll, "-k", "3").output
    assert "rank" in text and "hum_02.ogg" in text.splitlines()[1]
    info = json.loads(run("info", "--collection", coll, "--json").output)
    assert info["count"] == 20 and info["embedder"]["name"] == "logmel" and info["labels"]["tone"] == 4


def test_second_run_embeds_nothing_changed_file_reembedded_and_prune(demo_folder, tmp_path):
    import shutil

    folder = tmp_path / "src"
    shutil.copytree(demo_folder, folder)
    coll = tmp_path / "coll"
    assert index_json(folder, coll)["embedded"] == 20
    again = index_json(folder, coll)
    assert again["embedded"] == 0 and again["unchanged"] == 20 and again["vectors"] == 20
    # change one file, delete another
    target = folder / "tone" / "tone_00.wav"
    sf.write(target, (0.3 * np.sin(2 * np.pi * 1234 * np.arange(8000) / 16000)).astype(np.float32), 16000)
    (folder / "noise" / "noise_00.wav").unlink()
    third = index_json(folder, coll)
    assert third["changed"] == 1 and third["embedded"] == 1 and third["vectors"] == 20  # deleted kept without --prune
    fourth = index_json(folder, coll, "--prune")
    assert fourth["pruned_files"] == 1 and fourth["vectors"] == 19
    paths = [r["path"] for r in CollectionStore.open(coll).records(("path",))]
    assert len(paths) == len(set(paths)) == 19 and str(target) in paths


def test_interrupted_run_resumes_without_loss_or_duplicates(demo_folder, tmp_path):
    items = scan_folder(demo_folder).items
    seen = []

    def crash_after_eight(item):
        seen.append(item)
        if len(seen) == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_folder(demo_folder, tmp_path / "c", embedder="logmel", pooling="mu+sigma", flush_every=3,
                     on_file=crash_after_eight)
    partial = CollectionStore.open(tmp_path / "c")
    assert len(partial) == 6  # two flushes of three committed; the in-flight batch was lost
    report = index_folder(demo_folder, tmp_path / "c", flush_every=3)  # options come from the collection
    assert report.unchanged == 6 and report.embedded == 14
    final = CollectionStore.open(tmp_path / "c")
    paths = [r["path"] for r in final.records(("path",))]
    assert sorted(paths) == sorted(i.path for i in items)  # every file once
    # vectors equal a clean single run
    index_folder(demo_folder, tmp_path / "clean", embedder="logmel", pooling="mu+sigma")
    clean = CollectionStore.open(tmp_path / "clean")
    by_path = lambda c: {r["path"]: r["id"] for r in c.records(("path",))}  # noqa: E731
    a_ids, a = final.embeddings()
    b_ids, b = clean.embeddings()
    a_map, b_map = by_path(final), by_path(clean)
    for p in a_map:
        np.testing.assert_array_equal(a[list(a_ids).index(a_map[p])], b[list(b_ids).index(b_map[p])])


def test_bad_files_are_reported_and_good_files_present(tmp_path):
    folder = tmp_path / "messy"
    folder.mkdir()
    sr = 16000
    t = np.arange(sr) / sr
    good_tone = (0.4 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    sf.write(folder / "good.wav", good_tone, sr)
    sf.write(folder / "good.flac", good_tone[::-1].copy(), sr)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "truncated.wav", good_tone, sr, subtype="PCM_16")
    raw = (folder / "truncated.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(raw[: len(raw) // 3])
    (folder / "notes.wav").write_text("definitely not audio\n" * 20)
    sf.write(folder / "tiny_10ms.wav", good_tone[:160], sr)
    sf.write(folder / "zeros.wav", np.zeros(sr, np.float32), sr)
    nan = good_tone.copy()
    nan[::100] = np.nan
    sf.write(folder / "nan.wav", nan, sr, subtype="FLOAT")
    (folder / "readme.txt").write_text("not an audio extension: ignored")

    coll = tmp_path / "coll"
    summary = index_json(folder, coll)
    failed = {Path(f["path"]).name: f["error"] for f in summary["failures"]}
    assert failed == {"empty.wav": "AudioDecodeError", "notes.wav": "AudioDecodeError", "nan.wav": "NonFiniteAudioError",
                      "zeros.wav": "SilentAudioError"}  # silence is left out by default: nothing to index
    stored = sorted(Path(r["path"]).name for r in CollectionStore.open(coll).records(("path",)))
    assert stored == ["good.flac", "good.wav", "tiny_10ms.wav", "truncated.wav"]
    lines = [json.loads(x) for x in (coll / "errors.jsonl").read_text().splitlines()]
    assert sorted(Path(x["path"]).name for x in lines) == sorted(failed)
    text = run("index", folder, "--collection", coll, "--embedder", "logmel", "--quiet").output
    assert "4 failed" in text and "notes.wav" in text


def test_missing_weights_error_names_the_ways_and_never_falls_back(tmp_path, monkeypatch, demo_folder):
    monkeypatch.delenv("AUDIOSIM_MODELS", raising=False)
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as e:
        get_embedder("yamnet")
    msg = str(e.value)
    for needle in ("--weights", "AUDIOSIM_MODELS", "--embedder logmel", str(tmp_path / "cache")):
        assert needle in msg
    r = run("index", demo_folder, "--collection", tmp_path / "c", "--embedder", "yamnet", ok=False)
    assert r.exit_code == 2 and "--embedder logmel" in r.output
    assert not (tmp_path / "c" / "collection.json").exists()


def test_help_is_fast_and_imports_no_framework():
    code = "import sys, audiosim.cli; from click.testing import CliRunner; " \
           "r = CliRunner().invoke(audiosim.cli.main, ['--help']); assert r.exit_code == 0; " \
           "bad = [m for m in ('tensorflow', 'torch', 'faiss', 'pyarrow', 'librosa') if m in sys.modules]; " \
           "assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yamnet_cli_end_to_end_with_real_weights(demo_folder, tmp_path, yamnet_tflite):
    coll = tmp_path / "y"
    r = run("index", demo_folder, "--collection", coll, "--embedder", "yamnet", "--weights", yamnet_tflite, "--json", "--quiet")
    assert json.loads(r.output)["embedded"] == 20
    res = json.loads(run("query", demo_folder / "clicks" / "clicks_01.flac", "--collection", coll, "-k", "4", "--json").output)
    assert [h["label"] for h in res["queries"][0]["results"][:3]] == ["clicks"] * 3


def test_labels_from_csv_match_by_stem(demo_folder, tmp_path):
    table = tmp_path / "meta.csv"
    table.write_text("filename,category\nchirp_00.wav,sweep\nhum_01.wav,motor\nmissing.wav,nothing\n")
    coll = tmp_path / "c"
    index_json(demo_folder, coll, "--labels", table, "--label-column", "category")
    labels = {Path(r["path"]).name: r["label"] for r in CollectionStore.open(coll).records(("path", "label"))}
    assert labels["chirp_00.wav"] == "sweep" and labels["hum_01.flac"] == "motor" and labels["tone_00.wav"] == "tone"
    r = run("index", demo_folder, "--collection", tmp_path / "d", "--embedder", "logmel", "--labels", table, ok=False)
    assert r.exit_code == 2 and "'label' column" in r.output


def test_labels_given_later_relabel_without_reembedding(demo_folder, tmp_path):
    coll = tmp_path / "c"
    index_json(demo_folder, coll, "--label-from", "none")
    table = tmp_path / "meta.csv"
    table.write_text("path,label\nchirp_00.wav,sweep\n")
    again = index_json(demo_folder, coll, "--label-from", "none", "--labels", table)
    assert again["embedded"] == 0 and again["relabelled"] == 1
    labels = {Path(r["path"]).name: r["label"] for r in CollectionStore.open(coll).records(("path", "label"))}
    assert labels["chirp_00.wav"] == "sweep" and labels["tone_00.wav"] is None


def test_approximate_index_kind_is_recorded_and_used(demo_folder, tmp_path):
    coll = tmp_path / "c"
    index_json(demo_folder, coll, "--index-kind", "hnsw")
    info = json.loads(run("info", "--collection", coll, "--json").output)["index"]
    assert info["kind"] == "hnsw" and info["fresh"] and info["sidecar"]["kind"] == "hnsw"
    res = json.loads(run("query", demo_folder / "hum" / "hum_01.flac", "--collection", coll, "-k", "3", "--json").output)
    assert res["queries"][0]["results"][0]["path"].endswith("hum_01.flac")
    index_json(demo_folder, coll, "--index-kind", "flat")  # switching kinds rebuilds
    info = json.loads(run("info", "--collection", coll, "--json").output)["index"]
    assert info["kind"] == "flat" and info["sidecar"]["kind"] == "flat"


def test_embedder_options_from_the_command_line(demo_folder, tmp_path):
    from audiosim.commands.common import parse_options

    assert parse_options(("window_s=2", "variant=Cnn14_16k", "flag=true")) == {"window_s": 2, "variant": "Cnn14_16k", "flag": True}
    r = run("index", demo_folder, "--collection", tmp_path / "c", "--embedder", "logmel", "--option", "nonsense", ok=False)
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    r = run("index", demo_folder, "--collection", tmp_path / "c", "--embedder", "logmel", "--option", "bogus=1", ok=False)
    assert r.exit_code == 2 and "takes no option bogus" in r.output

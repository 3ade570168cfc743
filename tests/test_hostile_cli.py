"""Hostile command-line input gives a clear message and exit code 2, never a traceback.

Covers the options of ``index`` that used to crash or silently store nonsense (``--flush-every
0``, ``--segment -1``, ``--workers 0``, ``--segment-hop`` without ``--segment``, ``--wait nan``),
collection paths that do not exist, are files, are not collections, hold a garbled manifest,
are locked by a writer, or are read-only; and file names with newlines, which text output
escapes so one hit stays one line. Reading commands (``query``, ``info``, ``check``) write
nothing into a collection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from store_helpers import audiosim, cli, env, tree

from audiosim.engine.store.lock import WriterLock


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("hostile")
    audio = base / "audio"
    write_demo_folder(audio, per_kind=1, seed=4)
    coll = base / "coll"
    index_folder(audio, coll, embedder="logmel")
    return audio, coll


def invoke(*args):
    r = CliRunner().invoke(cli(), [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def _clip(audio):
    return sorted(p for p in audio.rglob("*.wav"))[0]


INDEX_OPTIONS = {
    "flush-every-0": (["--flush-every", "0"], "--flush-every"),
    "segment-negative": (["--segment", "-1"], "segment"),
    "segment-zero": (["--segment", "0"], "segment"),
    "segment-nan": (["--segment", "nan"], "segment"),
    "workers-0": (["--workers", "0"], "--workers"),
    "hop-without-segment": (["--segment-hop", "1"], "segment"),
    "wait-nan": (["--wait", "nan"], "--wait"),
    "pooling-unknown": (["--pooling", "median"], "pooling"),
    "metric-unknown": (["--metric", "manhattan"], "metric"),
    # issue 18: accepted without a word, or stored as null and a TypeError on the next rebuild
    "target-recall-nan": (["--index-kind", "auto", "--target-recall", "nan"], "--target-recall"),
    "target-recall-inf": (["--index-kind", "auto", "--target-recall", "inf"], "--target-recall"),
    "max-duration-nan": (["--max-duration", "nan"], "--max-duration"),
    "max-duration-negative": (["--max-duration", "-1"], "--max-duration"),
    "wait-negative": (["--wait", "-1"], "--wait"),
    "pooling-trailing-plus": (["--pooling", "mu+"], "pooling"),
    "pooling-empty-part": (["--pooling", "mu++sigma"], "pooling"),
    "segment-hop-nan": (["--segment", "1", "--segment-hop", "nan"], "--segment-hop"),
    "segment-inf": (["--segment", "inf"], "segment"),
    "gpus-per-actor-nan": (["--gpus-per-actor", "nan"], "--gpus-per-actor"),
}


@pytest.mark.parametrize("case", sorted(INDEX_OPTIONS))
def test_bad_index_options(indexed, tmp_path, case):
    audio, _ = indexed
    extra, word = INDEX_OPTIONS[case]
    coll = tmp_path / "c"
    r = invoke("index", audio, "--collection", coll, "--embedder", "logmel", "--quiet", *extra)
    assert r.exit_code == 2, r.output
    assert word in r.output.lower() or word in r.output, r.output
    assert not coll.exists()  # refused before anything was created


@pytest.mark.parametrize("command", ["query", "info", "check", "repair", "delete"])
@pytest.mark.parametrize("where", ["missing", "a-file", "not-a-collection"])
def test_bad_collection_paths(indexed, tmp_path, command, where):
    audio, _ = indexed
    target = {"missing": tmp_path / "nope", "a-file": tmp_path / "file.txt", "not-a-collection": tmp_path / "empty"}[where]
    if where == "a-file":
        target.write_text("hello")
    if where == "not-a-collection":
        target.mkdir()
    args = {"query": ["query", _clip(audio)], "info": ["info"], "check": ["check"], "repair": ["repair"],
            "delete": ["delete", "--id", "1"]}[command]
    before = tree(tmp_path)
    r = invoke(*args, "--collection", target)
    assert r.exit_code == 2, r.output
    assert str(target.name) in r.output or "not a collection" in r.output or "does not exist" in r.output, r.output
    assert tree(tmp_path) == before  # nothing created (no lock file, no parts/)


def test_index_into_a_file(indexed, tmp_path):
    audio, _ = indexed
    f = tmp_path / "file.txt"
    f.write_text("x")
    r = invoke("index", audio, "--collection", f, "--embedder", "logmel", "--quiet")
    assert r.exit_code == 2 and f.read_text() == "x"


@pytest.mark.parametrize("command", ["query", "info", "index", "delete"])
def test_garbled_manifest_names_the_fix(indexed, tmp_path, command):
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    (dst / "collection.json").write_bytes(b"\x00\xff garbage")
    args = {"query": ["query", _clip(audio)], "info": ["info"], "index": ["index", audio, "--embedder", "logmel"],
            "delete": ["delete", "--id", "1"]}[command]
    r = invoke(*args, "--collection", dst)
    assert r.exit_code == 2 and "audiosim repair --collection" in r.output, r.output


def test_a_locked_collection_names_the_holder(indexed, tmp_path):
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    with WriterLock(dst, wait=0, purpose="test holder"):
        for args in (["delete", "--id", "1"], ["repair"], ["index", audio, "--embedder", "logmel", "--quiet"]):
            r = invoke(*args, "--collection", dst, "--wait", "0.1")
            assert r.exit_code == 2 and f"PID {os.getpid()} on " in r.output and "--wait" in r.output, r.output
        assert invoke("check", "--collection", dst).exit_code == 0  # readers need no lock
        assert invoke("query", _clip(audio), "--collection", dst).exit_code == 0


def test_an_unwritable_collection_folder(indexed, tmp_path, monkeypatch):
    """Writing needs the lock file; where it cannot be opened the error names the folder (reads still work)."""
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    real = os.open

    def denied(path, flags, *a, **kw):
        if str(path).startswith(str(dst)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", denied)
    r = invoke("index", audio, "--collection", dst, "--embedder", "logmel", "--quiet")
    assert r.exit_code == 2 and "needs write access" in r.output and str(dst) in r.output, r.output
    for args in (["query", _clip(audio)], ["info"], ["check"]):
        assert invoke(*args, "--collection", dst).exit_code == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; the monkeypatched test above covers it")
def test_a_read_only_collection_folder(indexed, tmp_path):
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    (dst / ".lock").unlink()
    for d in (dst / "parts", dst / "index", dst):
        d.chmod(0o555)
    try:
        r = invoke("index", audio, "--collection", dst, "--embedder", "logmel", "--quiet")
        assert r.exit_code == 2 and "needs write access" in r.output, r.output
        assert invoke("query", _clip(audio), "--collection", dst).exit_code == 0
        assert invoke("check", "--collection", dst).exit_code == 0
    finally:
        for d in (dst, dst / "parts", dst / "index"):
            d.chmod(0o755)


def test_reading_commands_write_nothing(indexed):
    audio, coll = indexed
    before = tree(coll)
    for args in (["query", _clip(audio), "--json"], ["info", "--json"], ["check", "--json"], ["info"], ["check"]):
        assert invoke(*args, "--collection", coll).exit_code == 0
    assert tree(coll) == before


def test_newlines_in_file_names_and_labels_are_escaped(tmp_path):
    from audiosim.engine.audio.synth import write_demo_folder

    src = tmp_path / "src"
    write_demo_folder(src, per_kind=1, seed=6)
    odd = src / "new\nline"
    odd.mkdir()
    victim = next((src / "tone").iterdir())
    evil = odd / ("evil\nname\r" + victim.suffix)
    shutil.copy(victim, evil)
    coll = tmp_path / "c"
    r = invoke("index", src, "--collection", coll, "--embedder", "logmel", "--quiet")
    assert r.exit_code == 0, r.output
    q = invoke("query", evil, "--collection", coll, "-k", "3")
    assert q.exit_code == 0
    lines = q.output.splitlines()
    assert len(lines) == 4, lines  # the header and one line per hit
    assert any("evil\\x0aname\\x0d" in line and "new\\x0aline" in line for line in lines[1:]), lines
    info = invoke("info", "--collection", coll)
    assert "new\\x0aline (1)" in info.output and "\nline" not in info.output
    check = invoke("check", "--collection", coll)
    assert check.exit_code == 0


def test_subprocess_exit_codes_and_stderr(indexed, tmp_path):
    """The same through a real process: exit code 2, one line on stderr, no traceback."""
    audio, _ = indexed
    r = subprocess.run(audiosim("index", audio, "--collection", tmp_path / "c", "--embedder", "logmel",
                                "--segment", "-1"), capture_output=True, text=True, env=env(), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:"), r.stderr
    r = subprocess.run(audiosim("check", "--collection", tmp_path / "missing"), capture_output=True, text=True,
                       env=env(), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr


# issue 18: every float option refuses nan/inf (and negatives where they mean nothing); ids beyond int64 are a clear
# error. Each of these was a traceback or was accepted without a word.
NUMBER_OPTIONS = {
    "query-start-nan": (["query", "CLIP", "--start", "nan"], "--start"),
    "query-start-negative": (["query", "CLIP", "--start", "-1"], "--start"),
    "query-end-inf": (["query", "CLIP", "--end", "inf"], "--end"),
    "query-min-duration-nan": (["query", "CLIP", "--min-duration", "nan"], "--min-duration"),
    "query-max-duration-nan": (["query", "CLIP", "--max-duration", "nan"], "--max-duration"),
    "query-max-duration-negative": (["query", "CLIP", "--max-duration", "-2"], "--max-duration"),
    "query-id-beyond-int64": (["query", "--id", "9223372036854775808"], "--id"),
    "query-id-negative": (["query", "--id", "-1"], "--id"),
    "delete-id-beyond-uint64": (["delete", "--id", "18446744073709551616"], "--id"),
    "delete-wait-negative": (["delete", "--id", "1", "--wait", "-1"], "--wait"),
    "delete-wait-nan": (["delete", "--id", "1", "--wait", "nan"], "--wait"),
    "compact-target-mb-nan": (["compact", "--target-mb", "nan"], "--target-mb"),
    "compact-target-mb-inf": (["compact", "--target-mb", "inf"], "--target-mb"),
    "compact-wait-negative": (["compact", "--wait", "-1"], "--wait"),
    "repair-wait-negative": (["repair", "--wait", "-1"], "--wait"),
    "locate-start-nan": (["locate", "CLIP", "--start", "nan"], "--start"),
    "locate-end-negative": (["locate", "CLIP", "--end", "-3"], "--end"),
    "tags-min-score-nan": (["tags", "--min-score", "nan"], "--min-score"),
    "anomaly-fit-percentile-nan": (["anomaly", "fit", "--percentile", "nan"], "--percentile"),
    "anomaly-fit-percentile-above-100": (["anomaly", "fit", "--percentile", "101"], "--percentile"),
    "anomaly-fit-pca-beyond-the-dimensions": (["anomaly", "fit", "--pca", "100000"], "pca=100000"),
}


@pytest.mark.parametrize("case", sorted(NUMBER_OPTIONS))
def test_float_and_id_options_refuse_nan_inf_negative_and_beyond_int64(indexed, tmp_path, case):
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    args, word = NUMBER_OPTIONS[case]
    args = [_clip(audio) if a == "CLIP" else a for a in args]
    before = tree(dst)
    r = invoke(*args, "--collection", dst)
    assert r.exit_code == 2, r.output
    assert word in r.output, r.output
    assert tree(dst) == before  # refused before anything was written


@pytest.mark.parametrize("args", [["serve", "--collection", "X", "--max-upload-mb", "nan"],
                                  ["serve", "--collection", "X", "--queue-wait", "-1"],
                                  ["vae", "train", "AUDIO", "--out", "OUT", "--beta", "nan"],
                                  ["vae", "train", "AUDIO", "--out", "OUT", "--lr", "inf"],
                                  ["vae", "train", "AUDIO", "--out", "OUT", "--val-fraction", "nan"],
                                  ["vae", "train", "AUDIO", "--out", "OUT", "--time-limit", "nan"]])
def test_float_options_of_serve_and_vae_refuse_nan_and_inf(indexed, tmp_path, args):
    audio, coll = indexed
    args = [{"X": coll, "OUT": tmp_path / "out", "AUDIO": audio}.get(a, a) for a in args]
    r = invoke(*args)
    assert r.exit_code == 2 and args[-2] in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_delete_of_an_unknown_id_or_path_is_exit_2_and_missing_ok_says_what_was_missing(indexed, tmp_path):
    """Issue 18: an unknown --id printed "removed 0 vectors" and exited 0 while an unknown --path exited 2, and a
    retried delete failed. Both are exit 2 naming what is missing (nothing is deleted); --missing-ok deletes the
    rest, exits 0 and names what was missing, so a retried delete succeeds."""
    audio, coll = indexed
    dst = tmp_path / "c"
    shutil.copytree(coll, dst)
    victim = _clip(audio)
    before = {k: v for k, v in tree(dst).items() if k != ".lock"}  # the writer lock is taken, nothing else
    for args in (["--id", "99999"], ["--path", str(tmp_path / "nope.wav")], ["--id", "0", "--id", "99999"],
                 ["--id", "99999", "--path", str(victim)]):
        r = invoke("delete", "--collection", dst, *args)
        assert r.exit_code == 2 and "--missing-ok" in r.output, (args, r.output)
        assert ("99999" in r.output) or ("nope.wav" in r.output), r.output
    assert {k: v for k, v in tree(dst).items() if k != ".lock"} == before  # nothing deleted
    first = invoke("delete", "--collection", dst, "--path", victim, "--id", "0")
    assert first.exit_code == 0 and "removed" in first.output, first.output
    again = invoke("delete", "--collection", dst, "--path", victim, "--id", "0")
    assert again.exit_code == 2, again.output
    retry = invoke("delete", "--collection", dst, "--path", victim, "--id", "0", "--missing-ok")
    assert retry.exit_code == 0, retry.output
    assert "removed 0 vectors" in retry.output and "not in the collection" in retry.output
    assert victim.name in retry.output and "id 0" in retry.output
    doc = json.loads(invoke("delete", "--collection", dst, "--id", "0", "--missing-ok", "--json").output)
    assert doc["removed"] == 0 and doc["missing"] == {"ids": [0], "paths": []}

"""Hostile command-line input gives a clear message and exit code 2, never a traceback.

Covers the options of ``index`` that used to crash or silently store nonsense (``--flush-every
0``, ``--segment -1``, ``--workers 0``, ``--segment-hop`` without ``--segment``, ``--wait nan``),
collection paths that do not exist, are files, are not collections, hold a garbled manifest,
are locked by a writer, or are read-only; and file names with newlines, which text output
escapes so one hit stays one line. Reading commands (``query``, ``info``, ``check``) write
nothing into a collection.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from store_helpers import audiosim, cli, env, tree

from audiosim.engine.lock import WriterLock


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from audiosim.engine.ingest import index_folder
    from audiosim.engine.synth import write_demo_folder

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
    from audiosim.engine.synth import write_demo_folder

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

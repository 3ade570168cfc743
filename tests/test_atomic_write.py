"""files.atomic_path, the one atomic write: fsync, rename, folder fsync; nothing left behind on failure."""

from __future__ import annotations

import os

import pytest

from audiosim import files


def test_atomic_path_replaces_whole_and_syncs(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with files.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new" and len(synced) == 2  # the file, then the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    files.write_json_atomic(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "x": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_every_writer_goes_through_atomic_path():
    """No module renames a temporary file into place by itself (downloads and dataset extraction keep their own)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(["git", "grep", "-n", "-e", "os.replace(", "-e", "os.rename(", "--", "*.py",
                          ":!tests", ":!scripts", ":!files.py", ":!engine/models/weights.py", ":!eval/esc50.py"],
                         cwd=root, capture_output=True, text=True).stdout
    assert out == ""

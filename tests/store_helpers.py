"""Helpers shared by the store's fault-injection tests: run audiosim in a subprocess, kill it at a chosen
point, and compare a collection with a reference (every file once, the same vectors, labels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from audiosim.engine.store.store import CollectionStore, embedding_matrix


def cli():
    """The ``audiosim`` click group with ``check`` and ``repair`` (registered here until cli.py does)."""
    from audiosim.cli import main
    from audiosim.commands.check import check_cmd, repair_cmd

    for cmd in (check_cmd, repair_cmd):
        if cmd.name not in main.commands:
            main.add_command(cmd)
    return main


def env() -> dict:
    e = dict(os.environ)
    e.update(AUDIOSIM_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return e


def audiosim(*args) -> list[str]:
    """The command line of ``python -m audiosim ARGS`` (with check/repair registered)."""
    return [sys.executable, "-c", DRIVER, "0", "none", *map(str, args)]


def audiosim_killed(kill_at: int, point: str, *args) -> list[str]:
    """``audiosim ARGS`` that SIGKILLs itself at the ``kill_at``-th ``point`` (see :data:`DRIVER`)."""
    return [sys.executable, "-c", DRIVER, str(kill_at), point, *map(str, args)]


# Fault points: before / after the N-th os.replace (every atomic write: parts, manifest, index files,
# errors.jsonl), or at the N-th file removed by the garbage collector. With N = 0 nothing is killed
# and the number of events is printed to stderr as "FAULT-EVENTS <point> <n>".
DRIVER = r'''
import atexit, os, signal, sys
n, point = int(sys.argv[1]), sys.argv[2]
count = [0]
def hit():
    count[0] += 1
    if n and count[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
if point in ("replace-before", "replace-after"):
    real = os.replace
    def replace(a, b, **kw):
        if point == "replace-before":
            hit()
        real(a, b, **kw)
        if point == "replace-after":
            hit()
    os.replace = replace
elif point == "gc":
    import audiosim.engine.store.store as store
    real_remove = store._remove
    def remove(f):
        hit()
        real_remove(f)
    store._remove = remove
if point != "none":
    atexit.register(lambda: sys.stderr.write(f"FAULT-EVENTS {point} {count[0]}\n"))
from audiosim.cli import main
from audiosim.commands.check import check_cmd, repair_cmd
for cmd in (check_cmd, repair_cmd):
    if cmd.name not in main.commands:
        main.add_command(cmd)
sys.argv = ["audiosim"] + sys.argv[3:]
main()
'''


def run(cmd: list[str], *, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)


def fault_events(proc: subprocess.CompletedProcess) -> int:
    for line in proc.stderr.splitlines():
        if line.startswith("FAULT-EVENTS"):
            return int(line.split()[-1])
    raise AssertionError(f"no event count in the output: {proc.stderr[-2000:]}")


def vectors_by_path(root) -> dict[str, np.ndarray]:
    """{path: stored vector} of a one-vector-per-file collection, asserting every file and id appears once."""
    c = CollectionStore.open(root)
    t = c.read_table(["path", "embedding"])
    ids, paths = t["id"].to_numpy(), t["path"].to_pylist()
    assert np.unique(ids).size == ids.size, "duplicate ids"
    assert len(set(paths)) == len(paths), f"a file is stored twice: {sorted(p for p in paths if paths.count(p) > 1)}"
    return dict(zip(paths, embedding_matrix(t, c.dim)))


def labels_by_path(root) -> dict[str, str | None]:
    t = CollectionStore.open(root).read_table(["path", "label"])
    return dict(zip(t["path"].to_pylist(), t["label"].to_pylist()))


def assert_same_vectors(root, reference: dict[str, np.ndarray]) -> None:
    got = vectors_by_path(root)
    assert set(got) == set(reference), (sorted(set(reference) - set(got))[:5], sorted(set(got) - set(reference))[:5])
    for p, v in reference.items():
        np.testing.assert_allclose(got[p], v, rtol=1e-5, atol=1e-6, err_msg=p)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file and folder under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def check_json(root) -> dict:
    from click.testing import CliRunner

    r = CliRunner().invoke(cli(), ["check", "--collection", str(root), "--json"], catch_exceptions=False)
    assert "Traceback" not in r.output
    doc = json.loads(r.output)
    assert r.exit_code == (0 if doc["ok"] else 1), r.output
    return doc

"""Concurrent writers and readers, killed writers, and files rewritten while they are read.

Proves, with real processes (``python -m audiosim``-equivalent subprocesses on the weight-free
``logmel`` embedder):

* two and three ``audiosim index`` runs started at once on one collection (same folder or
  different folders, fresh or existing collection, commits every 1-3 files) each either complete
  or exit 2 with the lock message naming the holder's PID, never a traceback; afterwards every
  file is stored once with the vector a clean single run gives, and ``check`` passes;
* a search loop in another process (``Searcher``) and ``audiosim query`` runs during the writes
  never fail;
* a writer SIGKILLed at a chosen point of ``index``, ``--prune``, relabelling or ``delete``
  (before or after any atomic rename, or in the middle of the garbage collection) leaves a
  collection that ``check`` accepts; the next run completes with nothing lost or duplicated and
  the temporary files the kill left are gone;
* a file rewritten between its hash and its decode is stored under the hash of the bytes that
  were decoded.

``python tests/test_concurrency.py --trials 10`` runs ten concurrent-writer trials and prints
how many ended clean (JSON); the default test runs two.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from store_helpers import assert_same_vectors, audiosim, audiosim_killed, env, fault_events, labels_by_path, run, vectors_by_path

LOCKED = "is being written by another audiosim process (PID "

READER = r'''
import sys, time, traceback
from pathlib import Path
import numpy as np
from audiosim.engine.search.searcher import Searcher
coll, stop, out, clip = sys.argv[1:5]
rng = np.random.default_rng(0)
n, revisions = 0, set()
try:
    s = Searcher(coll)
    print("ready", flush=True)
    while not Path(stop).exists():
        if n % 5 == 4:
            s = Searcher(coll)  # a fresh open while writers commit
        hits = s.search(vector=rng.standard_normal(s.collection.dim).astype(np.float32), k=5)
        ids = [h.id for h in hits]
        assert len(set(ids)) == len(ids), ids
        own = s.search(clip=clip, k=1)
        assert own[0].path == clip and own[0].score > 0.999, own
        revisions.add(s.revision)
        n += 1
        time.sleep(0.02)  # a reader, not a CPU hog: leave the cores to the writers
except BaseException:
    Path(out).write_text("FAIL after %d searches\n%s" % (n, traceback.format_exc()))
    sys.exit(1)
Path(out).write_text("OK %d %d" % (n, len(revisions)))
'''


# ---------------------------------------------------------------------- fixtures
def _folders(base: Path) -> dict[str, Path]:
    from audiosim.engine.audio.synth import write_demo_folder

    out = {}
    for name, per_kind, seed in (("A", 2, 7), ("B", 2, 8), ("C", 1, 9)):
        out[name] = base / name
        if not out[name].exists():
            write_demo_folder(out[name], per_kind=per_kind, seed=seed)
    return out


def _reference(base: Path, folders: dict[str, Path]) -> dict[str, np.ndarray]:
    """{path: vector} of one clean in-process run over every folder."""
    from audiosim.engine.ingest.indexer import index_folder

    ref = base / "reference"
    if not ref.exists():
        for f in folders.values():
            index_folder(f, ref, embedder="logmel", flush_every=64)
    return vectors_by_path(ref)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("concurrency")
    folders = _folders(base)
    return base, folders, _reference(base, folders)


# ---------------------------------------------------------------------- concurrent writers
TRIALS = (
    # (fresh collection, folders of the writers, --wait of each writer (None: default), query loops)
    (True, "AA", (None, None), False),
    (False, "ABA", (None, 0.3, None), True),
    (True, "AB", (None, None), False),
    (False, "BBA", (None, None, 0.3), True),
    (True, "ABB", (None, None, None), False),
)


def writer_trial(base: Path, folders: dict[str, Path], reference: dict[str, np.ndarray], trial: int, *,
                 max_queries: int | None = None) -> dict:
    """One concurrent-writer trial; returns what happened and whether it ended clean (raises nothing).

    Trials with query loops run a ``Searcher`` loop in another process for the whole trial and
    ``audiosim query`` (at most ``max_queries`` times) while the writers run.
    """
    from audiosim.engine.ingest.indexer import index_folder

    fresh, names, waits, query_loop = TRIALS[trial % len(TRIALS)]
    rng = np.random.default_rng(trial)
    root = base / f"trial{trial}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    coll = root / "coll"
    expected = set(names)
    problems = []
    if not fresh:
        expected.add("C")
        index_folder(folders["C"], coll, embedder="logmel")
    stop, out = root / "stop", root / "reader.txt"
    clip = str(sorted(p for p in folders["C"].rglob("*") if p.is_file())[0])
    reader = None
    if query_loop:
        reader = subprocess.Popen([sys.executable, "-c", READER, str(coll), str(stop), str(out), clip], env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = reader.stdout.readline().strip()  # the searcher is loaded before the writers start
        if ready != "ready":
            return {"trial": trial, "clean": False, "problems": [f"the search loop did not start: {ready}"]}
    writers = []
    for name, wait in zip(names, waits):
        args = ["index", folders[name], "--collection", coll, "--embedder", "logmel", "--quiet",
                "--flush-every", int(rng.integers(1, 4))]
        if wait is not None:
            args += ["--wait", wait]
        writers.append(subprocess.Popen(audiosim(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    queries = 0
    while query_loop and any(w.poll() is None for w in writers) and (max_queries is None or queries < max_queries):
        q = run(audiosim("query", clip, "--collection", coll, "--json", "-k", "3"))
        queries += 1
        if q.returncode or "Traceback" in q.stderr or json.loads(q.stdout)["queries"][0]["results"][0]["path"] != clip:
            problems.append(f"audiosim query failed during the writes: {q.stderr[-800:]}")
    pids = {w.pid for w in writers}
    outcomes, rerun = [], []
    for w, name in zip(writers, names):
        stdout, stderr = w.communicate(timeout=300)
        if "Traceback" in stderr or "Traceback" in stdout:
            problems.append(f"writer {w.pid} printed a traceback: {stderr[-1500:]}")
        if w.returncode == 0:
            outcomes.append("completed")
        elif w.returncode == 2 and LOCKED in stderr:
            holder = int(stderr.split(LOCKED)[1].split()[0])
            if holder not in pids - {w.pid}:
                problems.append(f"lock message names PID {holder}, not another writer ({pids - {w.pid}})")
            outcomes.append("locked out")
            rerun.append(name)
        else:
            problems.append(f"writer {w.pid} exited {w.returncode}: {stderr[-1500:]}")
            outcomes.append(f"exit {w.returncode}")
    reader_result = None
    if reader is not None:
        stop.touch()
        reader.communicate(timeout=120)
        reader_result = out.read_text() if out.exists() else "no output"
        if not reader_result.startswith("OK"):
            problems.append(f"the search loop failed: {reader_result[-2000:]}")
    for name in rerun:  # the runs that found the collection busy: run them again, one at a time
        r = run(audiosim("index", folders[name], "--collection", coll, "--embedder", "logmel", "--quiet"))
        if r.returncode:
            problems.append(f"re-run of a locked-out writer failed: {r.stderr[-800:]}")
    try:
        want = {p: v for p, v in reference.items() if any(p.startswith(str(folders[n]) + os.sep) for n in expected)}
        assert_same_vectors(coll, want)
    except AssertionError as e:
        problems.append(f"lost, duplicated or different vectors: {e}")
    from audiosim.engine.store.integrity import check_collection
    from audiosim.engine.store.store import temporary_files

    report = check_collection(coll)
    if not report.ok or report.warnings:
        problems.append(f"check: {[p.to_dict() for p in report.problems]}")
    if temporary_files(coll):
        problems.append(f"temporary files left: {temporary_files(coll)}")
    return {"trial": trial, "writers": names, "fresh": fresh, "outcomes": outcomes, "queries": queries,
            "reader": reader_result, "clean": not problems, "problems": problems}


@pytest.mark.parametrize("trial", [0, 1])
def test_concurrent_writers_lose_nothing_and_readers_never_fail(world, trial):
    base, folders, reference = world
    result = writer_trial(base, folders, reference, trial, max_queries=2)
    assert result["clean"], json.dumps(result, indent=2)
    assert "completed" in result["outcomes"]
    if TRIALS[trial][3]:  # "OK <searches> <revisions seen>": it searched while the writers committed
        _, searches, revisions = result["reader"].split()
        assert int(searches) > 0 and int(revisions) >= 2, result["reader"]


@pytest.mark.slow
@pytest.mark.parametrize("trial", [2, 3, 4])
def test_more_concurrent_writer_trials(world, trial):
    base, folders, reference = world
    result = writer_trial(base, folders, reference, trial)
    assert result["clean"], json.dumps(result, indent=2)


def test_lock_message_names_the_holder_and_waits(world, tmp_path):
    """A second writer waits up to --wait, then exits 2 naming the holder's PID; a killed holder leaves no stale lock."""
    _, folders, _ = world
    coll = tmp_path / "coll"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(coll)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        r = run(audiosim("index", folders["C"], "--collection", coll, "--embedder", "logmel", "--wait", "1", "--quiet"))
        waited = time.monotonic() - t0
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"PID {holder.pid} on " in r.stderr and "pass a longer --wait SECONDS" in r.stderr
        assert waited >= 1.0
    finally:
        holder.kill()
        holder.wait()
    assert not (coll / "collection.json").exists()  # the refused writer wrote nothing
    # SIGKILLed holder: the kernel released the lock, the next writer takes it at once
    from audiosim.engine.store.lock import WriterLock

    with WriterLock(coll, wait=0, purpose="test"):
        pass


HOLD = r'''
import sys, time
from audiosim.engine.store.lock import WriterLock
from pathlib import Path
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
with WriterLock(sys.argv[1], purpose="test holder"):
    print("held", flush=True)
    time.sleep(600)
'''


# ---------------------------------------------------------------------- SIGKILL at chosen points
def _kill_setup(op: str, root: Path, folders: dict[str, Path]) -> tuple[list, dict, dict | None]:
    """Prepare ``root`` for ``op``; (audiosim arguments, expected {relative path: vector}, expected labels or None)."""
    from audiosim.engine.ingest.indexer import index_folder

    src = root / "audio"
    shutil.copytree(folders["A"], src)
    coll = root / "coll"
    if op != "index":
        index_folder(src, coll, embedder="logmel", flush_every=3)
    full = {str(Path(p).relative_to(src)): v for p, v in vectors_by_path(coll).items()} if op != "index" else None
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    if op == "index":
        return ["index", src, "--collection", coll, "--embedder", "logmel", "--flush-every", 2, "--quiet"], None, None
    if op == "prune":
        gone = files[1::4]
        for rel in gone:
            (src / rel).unlink()
        want = {k: v for k, v in full.items() if k not in gone}
        return ["index", src, "--collection", coll, "--prune", "--flush-every", 1, "--quiet"], want, None
    if op == "relabel":
        table = root / "labels.csv"
        with open(table, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            for rel in files[::3]:
                w.writerow([Path(rel).name, f"new-{Path(rel).stem}"])
        labels = {rel: (f"new-{Path(rel).stem}" if rel in files[::3] else Path(rel).parent.name) for rel in files}
        return ["index", src, "--collection", coll, "--labels", table, "--quiet"], full, labels
    if op == "delete":
        gone = files[::5]
        args = ["delete", "--collection", coll]
        for rel in gone:
            args += ["--path", src / rel]
        return args, {k: v for k, v in full.items() if k not in gone}, None
    raise ValueError(op)


def kill_trial(root: Path, folders: dict[str, Path], reference: dict, op: str, point: str, n: int) -> dict:
    from audiosim.engine.store.integrity import check_collection
    from audiosim.engine.store.store import CollectionStore, temporary_files

    args, want, labels = _kill_setup(op, root, folders)
    src, coll = root / "audio", root / "coll"
    if want is None:  # index from scratch: the reference vectors of folder A, by relative path
        want = {str(Path(p).relative_to(folders["A"])): v for p, v in reference.items()
                if p.startswith(str(folders["A"]) + os.sep)}
    killed = run(audiosim_killed(n, point, *args))
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert "Traceback" not in killed.stderr
    if CollectionStore.exists(coll):  # a kill leaves the previous or the next revision, never a mix
        after_kill = check_collection(coll)
        assert after_kill.ok, [p.to_dict() for p in after_kill.errors]
    again = run(audiosim(*args))
    if op == "delete" and again.returncode == 2 and "holds no file" in again.stderr:
        pass  # the killed run had committed the deletion already
    else:
        assert again.returncode == 0, again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    got = {str(Path(p).relative_to(src)): v for p, v in vectors_by_path(coll).items()}
    assert set(got) == set(want), (sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    if labels is not None:
        assert {str(Path(p).relative_to(src)): lab for p, lab in labels_by_path(coll).items()} == labels
    report = check_collection(coll)
    assert report.ok, [p.to_dict() for p in report.errors]
    assert not temporary_files(coll), temporary_files(coll)
    return {"op": op, "point": point, "n": n}


@pytest.mark.parametrize("op,point,n", [
    ("index", "replace-after", 5),    # a part renamed, the manifest not yet replaced
    ("prune", "gc", 1),               # the garbage collector killed half-way
    pytest.param("index", "replace-before", 4, marks=pytest.mark.slow),  # a part under its temporary name
    pytest.param("relabel", "replace-before", 2, marks=pytest.mark.slow),  # the manifest under its temporary name
])
def test_sigkill_then_rerun_completes(world, tmp_path, op, point, n):
    _, folders, reference = world
    kill_trial(tmp_path, folders, reference, op, point, n)


def _event_counts(base: Path, folders: dict[str, Path]) -> dict:
    """How many events of each point an uninterrupted run of each operation has."""
    counts = {}
    for op in ("index", "prune", "relabel", "delete"):
        for point in ("replace-before", "gc"):
            root = base / f"count-{op}-{point}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            args, _, _ = _kill_setup(op, root, folders)
            proc = run(audiosim_killed(0, point, *args))
            assert proc.returncode == 0, proc.stderr[-2000:]
            counts[(op, point)] = fault_events(proc)
    counts.update({(op, "replace-after"): counts[(op, "replace-before")] for op in ("index", "prune", "relabel", "delete")})
    return counts


@pytest.mark.slow
def test_sigkill_at_random_points_of_every_writing_command(world, tmp_path):
    """Three random kill points per command and fault kind (seeded), each followed by a clean re-run."""
    _, folders, reference = world
    counts = _event_counts(tmp_path, folders)
    rng = np.random.default_rng(11)
    done = []
    for (op, point), total in sorted(counts.items()):
        if total == 0:
            continue
        for n in sorted({int(x) for x in rng.integers(1, total + 1, size=3)}):
            root = tmp_path / f"{op}-{point}-{n}"
            root.mkdir()
            done.append(kill_trial(root, folders, reference, op, point, n))
    print(json.dumps({"kill_trials": len(done), "events": {f"{op} {point}": t for (op, point), t in counts.items()},
                      "killed_at": done}))
    assert len(done) >= 20, done


# ---------------------------------------------------------------------- hash what you embed
def _write_tone(path: Path, freq: float, seconds: float = 1.0) -> None:
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, subtype="PCM_16")


def _rewrite_during_decode(monkeypatch, target: Path, rewrite) -> list:
    """Make the first decode of ``target`` rewrite it just before the decoder opens it (after the diff hashed it)."""
    import audiosim.engine.audio.decode as audio

    real, calls = audio.open_audio, []

    def open_audio(path, *a, **kw):
        if Path(path) == target and not calls:
            calls.append(path)
            rewrite()
        return real(path, *a, **kw)

    monkeypatch.setattr(audio, "open_audio", open_audio)
    import audiosim.engine.ingest.pipeline as pipeline  # imports open_audio by name at its top

    monkeypatch.setattr(pipeline, "open_audio", open_audio)
    return calls


def test_file_rewritten_between_hash_and_decode_is_stored_under_the_decoded_bytes(tmp_path, monkeypatch):
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.store.store import CollectionStore
    from audiosim.files import sha256_file

    src = tmp_path / "src"
    src.mkdir()
    target = src / "a.wav"
    _write_tone(target, 440, 1.0)
    _write_tone(src / "b.wav", 880, 1.0)
    calls = _rewrite_during_decode(monkeypatch, target, lambda: _write_tone(target, 3000, 1.5))
    index_folder(src, tmp_path / "c", embedder="logmel", workers=1)
    assert calls, "the rewrite hook never ran"
    monkeypatch.undo()
    stored = {r["path"]: r["content_sha256"] for r in CollectionStore.open(tmp_path / "c").records()}
    assert stored[str(target)] == sha256_file(target)  # the hash of the bytes now on disk, which were decoded
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy2(target, clean / "a.wav")
    index_folder(clean, tmp_path / "c2", embedder="logmel")
    v = vectors_by_path(tmp_path / "c")[str(target)]
    np.testing.assert_allclose(v, next(iter(vectors_by_path(tmp_path / "c2").values())), rtol=1e-5, atol=1e-6)
    assert index_folder(src, tmp_path / "c", embedder="logmel").unchanged == 2


def test_same_size_rewrite_with_restored_mtime_is_detected(tmp_path, monkeypatch):
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.store.store import CollectionStore
    from audiosim.files import sha256_file

    src = tmp_path / "src"
    src.mkdir()
    target = src / "a.wav"
    _write_tone(target, 440, 1.0)
    other = tmp_path / "other.wav"
    _write_tone(other, 3000, 1.0)  # same length, same size, other sound
    assert other.stat().st_size == target.stat().st_size
    st = target.stat()

    def rewrite():
        with open(target, "r+b") as f:  # in place: same inode
            f.write(other.read_bytes())
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    calls = _rewrite_during_decode(monkeypatch, target, rewrite)
    index_folder(src, tmp_path / "c", embedder="logmel", workers=1)
    assert calls
    stored = {r["path"]: r["content_sha256"] for r in CollectionStore.open(tmp_path / "c").records()}
    assert stored[str(target)] == sha256_file(target)


# ---------------------------------------------------------------------- the 10-trial script
def main(argv: list[str]) -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Run concurrent-writer trials and print how many ended clean (JSON).")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the trial folders")
    a = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="audiosim-writers-"))
    t0 = time.monotonic()
    try:
        folders = _folders(base)
        reference = _reference(base, folders)
        results = [writer_trial(base, folders, reference, i) for i in range(a.trials)]
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"trials": len(results), "clean": sum(r["clean"] for r in results),
                      "seconds": round(time.monotonic() - t0, 1), "results": results}, indent=2))
    return 0 if all(r["clean"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

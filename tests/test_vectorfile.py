"""The parts' vector files: O(k) random access to stored vectors, covered by check, repair, compaction and SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from audiosim.engine.store import vectorfile
from audiosim.engine.store.compaction import compact_collection
from audiosim.engine.store.integrity import check_collection, repair_collection
from audiosim.engine.store.store import CollectionStore, Rows
from audiosim.errors import CollectionError, CorruptCollectionError

DIM = 8
EMB = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": DIM, "window_s": 1.0, "hop_s": 0.5,
       "weights_sha256": "ab" * 32}
POOL = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}


def synthetic_rows(n, rng, prefix="f"):
    return Rows(path=[f"/synthetic/{prefix}{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                offset_s=np.zeros(n), duration_s=np.full(n, 2.0), label=["a" if i % 3 else "b" for i in range(n)],
                embedding=rng.standard_normal((n, DIM)).astype(np.float32))


@pytest.fixture
def coll(tmp_path, rng):
    c = CollectionStore.create(tmp_path / "c", embedder=EMB, pooling=POOL, metric="cosine")
    for b in range(4):
        c.append(synthetic_rows(25, rng, prefix=f"p{b}-"))
    return c


def vec_files(c: CollectionStore) -> list:
    return [c.root / vectorfile.vector_file_name(p.name) for p in c.manifest.parts]


def test_the_file_layout_is_as_documented(rng):
    ids = np.array([7, 3, 9], np.int64)
    X = rng.standard_normal((3, 5)).astype(np.float32)
    raw = vectorfile.encode(ids, X)
    assert raw[:8] == b"ASVEC\x00\x01\x00" and int.from_bytes(raw[8:12], "little") == 5
    assert int.from_bytes(raw[16:24], "little") == 3
    assert np.frombuffer(raw[64:88], "<i8").tolist() == [7, 3, 9]
    import zlib

    assert np.frombuffer(raw[88:100], "<u4").tolist() == [zlib.crc32(r.tobytes()) for r in X]
    assert len(raw) == 4096 + 3 * 5 * 4 == vectorfile.file_bytes(3, 5)
    np.testing.assert_array_equal(np.frombuffer(raw[4096:], "<f4").reshape(3, 5), X)


def test_vectors_equal_the_parquet_rows_in_any_order(coll, rng):
    ids, X = coll.embeddings()
    assert all(p.has_vectors for p in coll.manifest.parts)
    want = rng.choice(ids, 40)  # repeats, across parts, unsorted
    np.testing.assert_array_equal(coll.vectors(want), X[np.searchsorted(ids, want)])
    with pytest.raises(CollectionError, match="no vector with id 1000"):
        coll.vectors([3, 1000])


def test_vectors_never_decode_parquet(coll, rng, monkeypatch):
    import audiosim.engine.store.store as store

    ids, X = coll.embeddings()
    fresh = CollectionStore.open(coll.root)

    def refuse(*a, **k):
        raise AssertionError("a by-id read decoded a Parquet part")

    monkeypatch.setattr(store, "read_part_file", refuse)
    np.testing.assert_array_equal(fresh.vectors(ids[::7]), X[::7])


def test_every_commit_keeps_vector_files_in_step(coll, rng):
    ids, _ = coll.embeddings()
    with coll.writer() as w:
        w.delete(ids[::4])
        w.set_labels({int(ids[1]): "relabelled"})
    compact_collection(coll.root)
    coll.refresh()
    ids2, X2 = coll.embeddings()
    assert len(coll.manifest.parts) == 1 and coll.manifest.parts[0].has_vectors
    np.testing.assert_array_equal(coll.vectors(ids2[::-1]), X2[::-1])
    with coll.writer() as w:
        w.append(synthetic_rows(1, rng, prefix="z"))  # the commit after removes what compaction retired
    on_disk = sorted(f.name for f in (coll.root / "parts").iterdir())
    coll.refresh()
    assert on_disk == sorted(n.split("/")[1] for p in coll.manifest.parts
                             for n in (p.name, vectorfile.vector_file_name(p.name)))
    assert check_collection(coll.root).ok


def test_a_flipped_bit_is_caught_on_read_reported_by_check_and_repaired(coll, rng):
    ids, X = coll.embeddings()
    f = vec_files(coll)[1]
    raw = bytearray(f.read_bytes())
    raw[vectorfile.data_offset(25) + 4 * DIM * 3 + 2] ^= 0x10  # row 3 of the second part
    f.write_bytes(bytes(raw))
    fresh = CollectionStore.open(coll.root)
    with pytest.raises(CorruptCollectionError, match=r"\.vec row 3 .*fails its checksum.*audiosim repair"):
        fresh.vectors(ids[25:30])
    report = check_collection(coll.root)
    assert not report.ok and [p.file for p in report.errors] == [str(f)]
    assert "nothing is lost" in report.errors[0].fix
    fixed = repair_collection(coll.root)
    assert fixed.ok and fixed.lost_vectors == 0 and any("vector files" in n for n in fixed.notes)
    np.testing.assert_array_equal(CollectionStore.open(coll.root).vectors(ids), X)


def test_a_missing_or_truncated_file_is_an_error_that_repair_fixes(coll):
    ids, X = coll.embeddings()
    first, second = vec_files(coll)[:2]
    with open(second, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CorruptCollectionError, match=r"\.vec has 100 bytes.*rebuilds the file from its Parquet part"):
        CollectionStore.open(coll.root).vectors(ids[30:33])
    first.unlink()
    with pytest.raises(CorruptCollectionError, match=r"\.vec is missing.*rebuilds the file from its Parquet part"):
        CollectionStore.open(coll.root).vectors(ids[:3])
    assert {p.file for p in check_collection(coll.root).errors} == {str(first), str(second)}
    assert repair_collection(coll.root).ok
    assert check_collection(coll.root).ok
    np.testing.assert_array_equal(CollectionStore.open(coll.root).vectors(ids), X)


def _legacy(c: CollectionStore) -> None:
    """Make ``c`` look written before vector files existed (records without them, no files)."""
    d = json.loads((c.root / "collection.json").read_text())
    for p in d["parts"]:
        p.pop("vec_bytes"), p.pop("vec_sha256")
    (c.root / "collection.json").write_text(json.dumps(d))
    for f in (c.root / "parts").glob("*.vec"):
        f.unlink()


def test_collections_without_vector_files_keep_working_and_get_them(coll):
    from audiosim.engine.store.indexing import ensure_index

    ids, X = coll.embeddings()
    _legacy(coll)
    old = CollectionStore.open(coll.root)
    assert not any(p.has_vectors for p in old.manifest.parts)
    np.testing.assert_array_equal(old.vectors(ids[::-3]), X[::-3])  # read from Parquet
    report = check_collection(coll.root)
    assert report.ok and sum("no vector file yet" in p.problem for p in report.warnings) == 4
    with old.writer() as w:  # the next index build writes them
        ensure_index(w)
    old.refresh()
    assert all(p.has_vectors for p in old.manifest.parts) and old.manifest.index_fresh
    np.testing.assert_array_equal(old.vectors(ids), X)
    assert check_collection(coll.root).ok and not check_collection(coll.root).warnings
    _legacy(coll)  # and so does repair
    assert repair_collection(coll.root).ok
    assert all(p.has_vectors for p in CollectionStore.open(coll.root).manifest.parts)


def test_a_half_legacy_collection_mixes_both_reads(coll, rng):
    ids, X = coll.embeddings()
    d = json.loads((coll.root / "collection.json").read_text())
    d["parts"][2].pop("vec_bytes"), d["parts"][2].pop("vec_sha256")
    (coll.root / "collection.json").write_text(json.dumps(d))
    (coll.root / vectorfile.vector_file_name(d["parts"][2]["name"])).unlink()
    mixed = CollectionStore.open(coll.root)
    want = rng.permutation(ids)
    np.testing.assert_array_equal(mixed.vectors(want), X[np.searchsorted(ids, want)])


KILLED_APPEND = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    from audiosim.engine.store.store import CollectionStore, Rows
    n = int(sys.argv[2]); count = [0]; real = os.replace
    def replace(a, b, **kw):
        real(a, b, **kw)
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    c = CollectionStore.open(sys.argv[1]); m = 5
    c.append(Rows(path=[f"/synthetic/k{i}.wav" for i in range(m)], content_sha256=["0" * 64] * m,
                  offset_s=np.zeros(m), duration_s=np.ones(m), label=[None] * m,
                  embedding=np.ones((m, c.dim), np.float32)))
''')


@pytest.mark.parametrize("n", [1, 2])  # killed after the vector file's rename / after the part's
def test_sigkill_between_the_renames_leaves_a_sound_collection(coll, rng, n):
    before = CollectionStore.open(coll.root).manifest
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_APPEND, str(coll.root), str(n)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert CollectionStore.open(coll.root).manifest == before  # the manifest was never replaced
    orphans = {f.name for f in (coll.root / "parts").iterdir() if not f.name.startswith(".")} - {
        n.split("/")[1] for p in before.parts for n in (p.name, vectorfile.vector_file_name(p.name))}
    assert len(orphans) == n and any(o.endswith(".vec") for o in orphans)
    assert check_collection(coll.root).ok
    coll.refresh()
    ids = coll.append(synthetic_rows(2, rng, prefix="after"))  # the next commit removes the orphans
    assert not ({f.name for f in (coll.root / "parts").iterdir()} & orphans)
    assert not list((coll.root / "parts").glob(".*.tmp"))
    assert coll.vectors(ids).shape == (2, DIM) and check_collection(coll.root).ok

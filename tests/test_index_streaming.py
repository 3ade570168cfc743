"""Streaming and on-disk builds hold exactly what an in-memory build holds; incremental updates equal a rebuild.

Also: the uniform one-pass sample, the on-disk IVF round trip (memory-mapped, the saved files
never modified), the retrain policy, and stdout staying clean while FAISS writes lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.files import sha256_file
from audiosim.indexes.kinds import load_index, make_index
from audiosim.indexes.maintenance import needs_retrain
from audiosim.indexes.streaming import build, sample_rows

DIM = 24
TRAINED = {"ivf": {"nlist": 16, "nprobe": 4}, "ivfsq8": {"nlist": 16, "nprobe": 4},
           "ivfpq": {"nlist": 16, "nprobe": 4, "m": 6}, "sq8": {}, "flat": {}}


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    c = rng.standard_normal((30, DIM)) * 3
    db = (c[rng.integers(0, 30, 4000)] + rng.standard_normal((4000, DIM))).astype(np.float32)
    ids = np.arange(len(db), dtype=np.int64) * 3 + 7
    q = (db[rng.integers(0, len(db), 40)] + 0.3 * rng.standard_normal((40, DIM))).astype(np.float32)
    return db, q, ids


def batches(ids, db, size=700):
    for s in range(0, len(ids), size):
        yield ids[s:s + size], db[s:s + size]


def trained(kind, db, metric="cosine"):
    index = make_index(kind, dim=DIM, metric=metric, **TRAINED[kind])
    return index.train(db[::4])


def same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-6)


def test_sample_rows_is_uniform_deterministic_and_exact(data):
    db, _, ids = data
    s_ids, s_x = sample_rows(batches(ids, db), 500, seed=3)
    assert s_ids.size == 500 and np.unique(s_ids).size == 500 and np.isin(s_ids, ids).all()
    np.testing.assert_array_equal(s_x, db[(s_ids - 7) // 3])
    again, _ = sample_rows(batches(ids, db), 500, seed=3)
    np.testing.assert_array_equal(again, s_ids)
    # uniform: every quarter of the data gets about a quarter of the sample (binomial sd ~ 10)
    counts = np.bincount(((s_ids - 7) // 3) // 1000, minlength=4)
    assert (np.abs(counts - 125) < 50).all(), counts
    all_ids, _ = sample_rows(batches(ids, db), 10 ** 6)
    np.testing.assert_array_equal(all_ids, ids)
    with pytest.raises(VectorIndexError, match="empty"):
        sample_rows(iter([]), 5)


@pytest.mark.parametrize("kind", list(TRAINED))
def test_streaming_build_equals_in_memory_build(kind, data):
    db, q, ids = data
    whole = trained(kind, db)
    whole.add(ids, db)
    streamed = build(trained(kind, db), batches(ids, db))
    same(whole.search(q, 10), streamed.search(q, 10))
    untrained = make_index(kind, dim=DIM, **TRAINED[kind])
    if untrained.TRAINED:
        with pytest.raises(VectorIndexError, match="train"):
            build(untrained, batches(ids, db))


def test_streaming_build_feeds_the_ground_truth(data):
    from audiosim.indexes.flat import brute_force
    from audiosim.indexes.groundtruth import ExactTopK

    db, q, ids = data
    truth = ExactTopK(q, k=10, metric="euclidean")
    seen = []
    build(make_index("flat", dim=DIM, metric="euclidean"), batches(ids, db), truth=truth, progress=seen.append)
    scores, got = truth.result()
    ref_scores, ref_pos = brute_force(db, q, 40, metric="euclidean")
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)  # all 4k kept (ties may swap order)
    np.testing.assert_array_equal(got[:, :10], ids[ref_pos[:, :10]])
    assert seen[-1] == len(ids) and len(seen) == 6


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf", "ivfsq8", "ivfpq"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_incremental_add_and_remove_equal_a_rebuild(kind, metric, data):
    db, q, ids = data
    half = len(ids) // 2
    gone = ids[half - 300: half + 300: 2]
    inc = trained(kind, db, metric)
    inc.add(ids[:half], db[:half])
    inc.add(ids[half:], db[half:])  # no retraining: the same cells and codebooks
    assert inc.remove(gone) == gone.size
    keep = ~np.isin(ids, gone)
    rebuilt = trained(kind, db, metric)
    rebuilt.add(ids[keep], db[keep])
    same(inc.search(q, 10), rebuilt.search(q, 10))
    assert len(inc) == len(rebuilt) == keep.sum()


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_on_disk_ivf_round_trip_and_incremental_updates(kind, data, tmp_path, capfd):
    db, q, ids = data
    memory = trained(kind, db)
    memory.add(ids, db)
    disk = trained(kind, db)
    build(disk, batches(ids, db), directory=tmp_path / "a", ondisk=True, shard_bytes=900 * (disk.code_bytes() + 8))
    sidecar = disk.save(tmp_path / "a", extra={"collection_revision": 1})
    lists = [name for name in sidecar["files"] if name.endswith(".ivfdata")]
    assert disk.ondisk and len(lists) == 1 and "sha256" not in sidecar["files"][lists[0]]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(["faiss.index", "index.json", lists[0]])
    assert disk.memory_bytes() < memory.memory_bytes()  # the lists are mapped, not resident
    same(memory.search(q, 10), disk.search(q, 10))
    assert capfd.readouterr().out == ""  # FAISS's progress lines went to stderr

    loaded, _ = load_index(tmp_path / "a")
    assert loaded.ondisk and len(loaded) == len(ids)
    same(memory.search(q, 10), loaded.search(q, 10))
    allowed = ids[::11]
    same(memory.search(q, 10, allowed_ids=allowed), loaded.search(q, 10, allowed_ids=allowed))
    before = {p.name: sha256_file(p) for p in (tmp_path / "a").iterdir()}

    # incremental: new vectors go to an in-memory delta, removals are tombstones; results equal the in-memory index
    rng = np.random.default_rng(5)
    new_ids = np.arange(20000, 20300, dtype=np.int64)
    new_x = (db[rng.integers(0, len(db), 300)] + 0.5 * rng.standard_normal((300, DIM))).astype(np.float32)
    gone = np.concatenate([ids[100:400], new_ids[:50]])
    for index in (memory, loaded):
        index.add(new_ids, new_x)
        assert index.remove(gone) == gone.size
    assert len(loaded) == len(memory) and loaded.removed_count == 300
    same(memory.search(q, 10), loaded.search(q, 10))
    same(memory.search(q, 10, allowed_ids=new_ids), loaded.search(q, 10, allowed_ids=new_ids))
    np.testing.assert_allclose(loaded.reconstruct(new_ids[60:62]), memory.reconstruct(new_ids[60:62]), rtol=1e-6)
    with pytest.raises(VectorIndexError, match="never reused"):
        loaded.add(ids[100:102], db[100:102])

    # saving merges lists, delta and tombstones into a new directory; the loaded files are untouched
    loaded.save(tmp_path / "b")
    assert {p.name: sha256_file(p) for p in (tmp_path / "a").iterdir()} == before
    assert loaded.removed_count == 0 and not (tmp_path / "b" / "removed.npy").exists()
    again, sidecar_b = load_index(tmp_path / "b")
    assert sidecar_b["count"] == len(memory)
    same(memory.search(q, 10), again.search(q, 10))
    np.testing.assert_array_equal(np.sort(again.ids()), np.sort(memory.ids()))
    assert capfd.readouterr().out == ""

    with pytest.raises(VectorIndexError, match="on disk"):
        again.save(tmp_path / "c", ondisk=False)
    lists_b = next((tmp_path / "b").glob("*.ivfdata"))
    with open(lists_b, "ab") as f:
        f.write(b"\0")
    with pytest.raises(VectorIndexError, match="garbled"):
        load_index(tmp_path / "b")


def test_in_memory_index_saved_on_disk(data, tmp_path):
    db, q, ids = data
    index = trained("ivfsq8", db)
    index.add(ids, db)
    expect = index.search(q, 10)
    index.save(tmp_path / "d", ondisk=True)
    assert index.ondisk
    same(expect, index.search(q, 10))
    loaded, _ = load_index(tmp_path / "d")
    same(expect, loaded.search(q, 10))
    with pytest.raises(VectorIndexError, match="only IVF"):
        make_index("flat", dim=DIM).save(tmp_path / "e", ondisk=True)
    with pytest.raises(VectorIndexError, match="only IVF"):
        build(make_index("flat", dim=DIM), batches(ids, db), directory=tmp_path / "f", ondisk=True)


def test_retrain_policy(data, tmp_path):
    db, _, ids = data
    index = trained("ivf", db)
    index.add(ids[:1000], db[:1000])
    sidecar = index.save(tmp_path / "p")
    assert sidecar["trained_for"] == 1000
    assert needs_retrain(sidecar, 3999) is None and needs_retrain(index, 3999) is None
    assert "grew" in needs_retrain(sidecar, 4001)
    assert "shrank" in needs_retrain(sidecar, 200)
    assert needs_retrain(sidecar, 8000, factor=10) is None
    flat = {"kind": "flat", "count": 10, "trained_for": 10}
    assert needs_retrain(flat, 10 ** 6) is None
    assert needs_retrain({**flat, "build": {"requested": "auto"}}, 10 ** 6)  # auto re-chooses past the factor
    hnsw = make_index("hnsw", dim=DIM, m=8)
    hnsw.add(ids[:400], db[:400])
    hnsw.remove(ids[:90])
    assert needs_retrain(hnsw, 310) is None
    hnsw.remove(ids[90:120])
    assert "removed" in needs_retrain(hnsw, 280)

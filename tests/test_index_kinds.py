"""Every index kind against brute force: recall, exact re-ranking, filters, removal, save/load, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.indexes.flat import brute_force
from audiosim.indexes.kinds import KINDS, kind_names, load_index, make_index

DIM = 32
# small-data parameters: IVF cells sized for 3,000 vectors, PQ with 4 dimensions per code
PARAMS = {"flat": {}, "sq8": {}, "hnsw": {"m": 16}, "hnswlib": {"m": 16}, "hnswsq": {"m": 16},
          "hnswpca": {"m": 16, "d": 24, "rerank": 0}, "ivf": {"nlist": 32, "nprobe": 8},
          "ivfsq8": {"nlist": 32, "nprobe": 8}, "ivfpq": {"nlist": 32, "nprobe": 8, "m": 8}}
# recall@10 without re-ranking (compressed codes lose some neighbours) and with it
MIN_RECALL = {"flat": 1.0, "sq8": 0.85, "hnsw": 0.95, "hnswlib": 0.95, "hnswsq": 0.85, "hnswpca": 0.6, "ivf": 0.9, "ivfsq8": 0.85, "ivfpq": 0.4}
EXACT = ("flat", "sq8")  # exhaustive: a filter always yields k hits when k are allowed


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def clustered(rng, n=3000, dim=DIM, centers=40):
    c = rng.standard_normal((centers, dim)) * 3
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    db = clustered(rng)
    q = (db[rng.integers(0, len(db), 60)] + 0.2 * rng.standard_normal((60, DIM))).astype(np.float32)
    ids = np.arange(len(db), dtype=np.int64) * 5 + 100  # sparse, non-positional ids
    return db, q, ids


def make(name, metric, **extra):
    return make_index(name, dim=DIM, metric=metric, **PARAMS[name], **extra)


def fetcher(db, ids):
    pos = {int(i): r for r, i in enumerate(ids)}

    def fetch(want):
        return db[[pos[int(i)] for i in want]]

    return fetch


def recall(found, ref):
    return float(np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(found, ref)]))


def test_registry_names_every_kind():
    assert set(KINDS) == set(PARAMS)
    assert kind_names()[-1] == "auto"
    with pytest.raises(VectorIndexError, match="choose_and_build"):
        make_index("auto", dim=4)
    with pytest.raises(VectorIndexError, match="bad parameters"):
        make_index("ivf", dim=4, m=3)
    with pytest.raises(VectorIndexError, match="m dividing dim"):
        make_index("ivfpq", dim=30, m=8)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("name", list(PARAMS))
def test_recall_and_exact_reranking(name, metric, data):
    db, q, ids = data
    index = make(name, metric)
    index.add(ids, db)
    assert len(index) == len(db)
    ref_scores, ref_pos = brute_force(db, q, 10, metric=metric)
    plain = index.search(q, 10)
    assert recall(plain.ids, ids[ref_pos]) >= MIN_RECALL[name]
    # re-ranking the top 10 x k exactly: recall only improves, and the scores are the exact ones
    fetch = fetcher(db, ids)
    rr = index.search(q, 10, fetch=fetch, rerank=10)
    assert recall(rr.ids, ids[ref_pos]) >= max(recall(plain.ids, ids[ref_pos]), 0.9)
    pos = (rr.ids - 100) // 5
    for row in range(len(q)):
        exact, _ = brute_force(db[pos[row]], q[row:row + 1], 10, metric=metric)
        np.testing.assert_allclose(rr.scores[row], exact[0], rtol=1e-4, atol=1e-4)
    # where re-ranked results agree with the truth, so do their scores
    np.testing.assert_allclose(rr.scores[:, 0][rr.ids[:, 0] == ids[ref_pos[:, 0]]],
                               ref_scores[:, 0][rr.ids[:, 0] == ids[ref_pos[:, 0]]], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(PARAMS))
def test_filtered_search_returns_only_allowed_ids(name, data):
    db, q, ids = data
    index = make(name, "cosine")
    index.add(ids, db)
    allowed = ids[::7]
    res = index.search(q, 10, allowed_ids=allowed)
    assert np.isin(res.ids[res.ids >= 0], allowed).all()
    if name in EXACT:
        assert (res.ids >= 0).all()
        few = ids[[3, 30, 300]]
        res = index.search(q[:5], 10, allowed_ids=few)
        assert (np.sort(res.ids[:, :3], axis=1) == np.sort(few)).all() and (res.ids[:, 3:] == -1).all()
    if name.startswith("ivf"):  # every cell visited: an IVF index is exhaustive too
        index.set_knob(index.nlist)
        assert (index.search(q, 10, allowed_ids=allowed).ids >= 0).all()
    assert (index.search(q, 3, allowed_ids=[]).ids == -1).all()


@pytest.mark.parametrize("name", list(PARAMS))
def test_remove_then_search_never_returns_removed_ids(name, data, tmp_path):
    db, q, ids = data
    index = make(name, "euclidean")
    index.add(ids, db)
    gone = ids[: len(ids) // 3]
    assert index.remove(np.concatenate([gone, [-5, 10 ** 9]])) == gone.size  # unknown ids are ignored
    assert index.remove(gone) == 0
    assert len(index) == len(ids) - gone.size
    res = index.search(q, 10)
    assert not np.isin(res.ids, gone).any() and (res.ids >= 0).all()
    kept_db, kept_ids = db[len(ids) // 3:], ids[len(ids) // 3:]
    _, ref = brute_force(kept_db, q, 10, metric="euclidean")
    assert recall(res.ids, kept_ids[ref]) >= MIN_RECALL[name] - 0.05
    if not index.NATIVE_REMOVE or getattr(index, "ondisk", False):  # tombstones: the old vector is still there
        with pytest.raises(VectorIndexError, match="never reused"):
            index.add(gone[:2], db[:2])
    # tombstones (HNSW) survive a save/load round trip
    index.save(tmp_path / name)
    loaded, sidecar = load_index(tmp_path / name)
    assert len(loaded) == len(index) and sidecar["count"] == len(index)
    np.testing.assert_array_equal(loaded.search(q, 10).ids, res.ids)
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(kept_ids))


@pytest.mark.parametrize("name", list(PARAMS))
def test_save_load_round_trip_and_garbled_files(name, data, tmp_path):
    db, q, ids = data
    index = make(name, "cosine")
    index.add(ids, db)
    sidecar = index.save(tmp_path / "idx", extra={"collection_revision": 4})
    assert sidecar["kind"] == name and sidecar["collection_revision"] == 4
    assert sidecar["memory_bytes"] == index.memory_bytes() > 0 and sidecar["trained_for"] == len(db)
    loaded, again = load_index(tmp_path / "idx")
    assert type(loaded) is type(index) and again["params"] == index.params()
    a, b = index.search(q, 10), loaded.search(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(loaded.reconstruct(ids[[4, 9]]), index.reconstruct(ids[[4, 9]]), rtol=1e-6)
    path = tmp_path / "idx" / ("hnswlib.bin" if name in ("hnswlib", "hnswpca") else "faiss.index")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="garbled"):
        load_index(tmp_path / "idx")
    path.unlink()
    with pytest.raises(VectorIndexError, match="missing"):
        load_index(tmp_path / "idx")
    (tmp_path / "idx" / "index.json").write_text("{not json")
    with pytest.raises(VectorIndexError, match="cannot read"):
        load_index(tmp_path / "idx")


def test_opq_rotated_ivfpq(data, tmp_path):
    db, q, ids = data
    index = make_index("ivfpq", dim=DIM, nlist=16, nprobe=16, m=8, opq=True)
    index.add(ids, db)
    _, ref = brute_force(db, q, 10, metric="cosine")
    assert recall(index.search(q, 10, fetch=fetcher(db, ids), rerank=10).ids, ids[ref]) >= 0.9
    index.save(tmp_path / "opq")
    loaded, sidecar = load_index(tmp_path / "opq")
    assert sidecar["params"]["opq"] is True
    np.testing.assert_array_equal(loaded.search(q, 10).ids, index.search(q, 10).ids)


def test_reranking_needs_a_fetch_of_the_right_shape(data):
    db, q, ids = data
    index = make_index("ivfpq", dim=DIM, nlist=16, m=8, rerank=4)
    index.add(ids, db)
    with pytest.raises(VectorIndexError, match="pass fetch"):
        index.search(q, 5)
    assert index.search(q, 5, rerank=0).ids.shape == (len(q), 5)  # approximate scores on request
    with pytest.raises(VectorIndexError, match="fetch returned shape"):
        index.search(q, 5, fetch=lambda want: db[: len(want) - 1])
    res = index.search(q, 5, fetch=fetcher(db, ids))
    assert res.ids.shape == (len(q), 5) and (res.ids >= 0).all()


def test_bad_input_is_a_typed_error(data):
    db, _, ids = data
    index = make_index("ivf", dim=DIM, nlist=16)
    with pytest.raises(VectorIndexError, match="shape"):
        index.add(ids[:3], db[:3, :5])
    with pytest.raises(VectorIndexError, match="NaN"):
        index.add(ids[:3], np.full((3, DIM), np.nan, np.float32))
    with pytest.raises(VectorIndexError, match="at least nlist"):
        index.train(db[:10])
    with pytest.raises(VectorIndexError, match="rerank"):
        make_index("flat", dim=4, rerank=-1)
    empty = make_index("ivfpq", dim=DIM, m=8)
    assert (empty.search(db[:2], 3).ids == -1).all()  # untrained and empty: nothing found, no crash
    index.add(ids, db)
    with pytest.raises(VectorIndexError, match="already trained"):
        index.train(db)
    with pytest.raises(VectorIndexError, match="removed|holds no vector"):
        index.reconstruct([-1])

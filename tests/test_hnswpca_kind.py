"""The ``hnswpca`` kind (HNSW over principal components, exact re-rank): recall against brute force through the
store and the Searcher, save/load with checksums, deletes, a parameter change rebuilding, the CLI, and ``auto``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("hnswlib", reason="the hnswpca kind needs the hnswlib extra")

from audiosim.errors import VectorIndexError  # noqa: E402
from audiosim.indexes.flat import brute_force  # noqa: E402
from audiosim.indexes.kinds import load_index, make_index  # noqa: E402

DIM = 256
LATENT = 12  # synthetic vectors of low intrinsic dimension, as audio embeddings are

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def low_rank(rng, n, *, basis, noise=0.02):
    """Synthetic vectors: random points of a LATENT-dimensional subspace of DIM, an offset, a little noise."""
    return (rng.standard_normal((n, LATENT)) @ basis + 0.5 + noise * rng.standard_normal((n, DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    basis = rng.standard_normal((LATENT, DIM)).astype(np.float32)
    return low_rank(rng, 3000, basis=basis), low_rank(rng, 40, basis=basis)


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def _collection(tmp_path, X, *, params):
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore, Rows

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": DIM, "window_s": 1.0, "hop_s": 0.5}
    pool = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}
    coll = CollectionStore.create(tmp_path / "c", embedder=emb, pooling=pool, index_kind="hnswpca", index_params=params)
    n = len(X)
    coll.append(Rows(path=[f"/synthetic/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                     offset_s=np.zeros(n), duration_s=np.ones(n), label=[f"l{i % 7}" for i in range(n)], embedding=X))
    with coll.writer() as w:
        rec = ensure_index(w)
    return coll, rec


def test_searcher_on_hnswpca_matches_brute_force(tmp_path, data):
    from audiosim.engine.search.searcher import Searcher

    X, Q = data
    coll, rec = _collection(tmp_path, X, params={"d": 24, "m": 12})
    assert rec.kind == "hnswpca"
    d = coll.root / rec.dir
    assert (d / "hnswlib.bin").is_file() and (d / "pca.npy").is_file()
    sidecar = json.loads((d / "index.json").read_text())
    assert sidecar["params"]["d"] == 24 and {"hnswlib.bin", "pca.npy"} <= set(sidecar["files"])
    assert sidecar["explained_variance"] > 0.9  # 24 components of LATENT-dimensional data
    searcher = Searcher(coll.root)
    ref_scores, truth = brute_force(X, Q, 10, metric="cosine")
    hits = [searcher.search(vector=q, k=10) for q in Q]
    assert recall([[h.id for h in r] for r in hits], truth) >= 0.95
    for r, s, t in zip(hits, ref_scores, truth):  # re-ranked from the stored vectors: the scores are exact
        exact = {int(i): float(v) for i, v in zip(t, s)}
        assert all(abs(h.score - exact[h.id]) < 1e-5 for h in r if h.id in exact)
    # the single-vector path and the general one (a batch of one, float64 input) agree
    batch = searcher.search(vector=Q[:1].astype(np.float64), k=10)[0]
    assert [h.id for h in batch] == [h.id for h in hits[0]]
    np.testing.assert_allclose([h.score for h in batch], [h.score for h in hits[0]], rtol=1e-6)
    # a label filter: 429 allowed rows are scored exactly
    labels = np.array([f"l{i % 7}" for i in range(len(X))])
    allowed = np.flatnonzero(labels == "l3")
    s, o = brute_force(X[allowed], Q[:1], 5, metric="cosine")
    assert [h.id for h in searcher.search(vector=Q[0], k=5, label="l3")] == allowed[o[0]].tolist()


def test_deletes_and_a_parameter_change(tmp_path, data):
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.integrity import check_collection

    X, Q = data
    coll, rec = _collection(tmp_path, X, params={"d": 24, "m": 12})
    searcher = Searcher(coll.root)
    with coll.writer() as w:  # deletes update the saved graph in place (marked deleted, kept as tombstones)
        w.delete(range(0, len(X), 4))
        after = ensure_index(w)
    assert after.kind == "hnswpca" and after.dir != rec.dir
    assert json.loads((coll.root / after.dir / "index.json").read_text())["how"] == "updated in place"
    searcher.refresh()
    kept = np.arange(len(X))[np.arange(len(X)) % 4 != 0]
    _, truth = brute_force(X[kept], Q, 10, metric="cosine")
    found = [[h.id for h in searcher.search(vector=q, k=10)] for q in Q]
    assert all(i % 4 != 0 for row in found for i in row)
    assert recall(found, kept[truth]) >= 0.95
    assert check_collection(coll.root).ok
    with coll.writer() as w:  # another number of components: the index is rebuilt, not updated
        w.set_fields(index_params={"d": 16, "m": 12})
        rebuilt = ensure_index(w)
    sidecar = json.loads((coll.root / rebuilt.dir / "index.json").read_text())
    assert sidecar["how"] == "rebuilt" and sidecar["params"]["d"] == 16 and sidecar["removed"] == 0
    assert searcher.refresh()
    found = [[h.id for h in searcher.search(vector=q, k=10)] for q in Q]
    assert recall(found, kept[truth]) >= 0.95


def test_save_load_round_trip_and_a_garbled_projection(tmp_path, data):
    X, Q = data
    ids = np.arange(len(X), dtype=np.int64) * 3 + 5
    fetch = lambda want: X[(np.asarray(want) - 5) // 3]  # noqa: E731
    index = make_index("hnswpca", dim=DIM, d=24, m=12)
    index.add(ids, X)
    with pytest.raises(VectorIndexError, match="pass fetch"):  # re-ranking needs the stored vectors
        index.search(Q, 10)
    assert index.search(Q, 10, rerank=0).ids.shape == (len(Q), 10)  # the graph's approximate scores on request
    index.remove(ids[:10])
    index.save(tmp_path / "i")
    loaded, sidecar = load_index(tmp_path / "i")
    assert sidecar["kind"] == "hnswpca" and sidecar["removed"] == 10 and loaded.params() == index.params()
    a, b = index.search(Q, 10, fetch=fetch), loaded.search(Q, 10, fetch=fetch)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert not np.isin(b.ids, ids[:10]).any()
    # the components map back close to the stored (unit) vectors
    unit = X[20:23] / np.linalg.norm(X[20:23], axis=1, keepdims=True)
    assert np.abs(loaded.reconstruct(ids[20:23]) - unit).max() < 0.05
    path = tmp_path / "i" / "pca.npy"
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="garbled"):
        load_index(tmp_path / "i")
    path.unlink()
    with pytest.raises(VectorIndexError, match="missing"):
        load_index(tmp_path / "i")
    with pytest.raises(VectorIndexError, match="d must be in 1..256"):
        make_index("hnswpca", dim=DIM, d=300)


def test_the_cli_builds_and_queries_an_hnswpca_collection(demo_folder, tmp_path):
    from click.testing import CliRunner

    from audiosim.cli import main

    def run(*args):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    coll = tmp_path / "c"
    run("index", demo_folder, "--collection", coll, "--embedder", "logmel", "--json", "--quiet", "--index-kind", "hnswpca")
    info = json.loads(run("info", "--collection", coll, "--json"))["index"]
    assert info["kind"] == "hnswpca" and info["fresh"] and info["sidecar"]["kind"] == "hnswpca"
    res = json.loads(run("query", demo_folder / "hum" / "hum_01.flac", "--collection", coll, "-k", "3", "--json"))
    assert res["queries"][0]["results"][0]["path"].endswith("hum_01.flac")


def test_auto_chooses_hnswpca_when_floats_exceed_the_budget_and_falls_back_when_it_misses(data, monkeypatch):
    from audiosim.indexes import auto

    assert auto.plan_index(80_000, 1024, memory_budget="1G", rerank_ok=True).kind == "hnsw"  # the floats fit
    assert auto.plan_index(80_000, 1024, memory_budget="150M", rerank_ok=True).kind == "hnswpca"
    assert auto.plan_index(80_000, 1024, memory_budget="150M").kind == "hnswsq"  # no fetch: no exact re-rank
    assert auto.plan_index(80_000, 128, memory_budget="50M", rerank_ok=True).kind == "hnswsq"  # too few dims
    X, Q = data
    ids = np.arange(len(X), dtype=np.int64)

    def batches():
        return ((ids[s:s + 500], X[s:s + 500]) for s in range(0, len(X), 500))

    small = {"exact_max_n": 500, "graph_max_n": 5000}  # 3 MB: the float graph (4 MB) does not fit, hnswpca does
    index = auto.choose_and_build(batches, n=len(X), dim=DIM, fetch=lambda want: X[want], queries=100,
                                  memory_budget="3M", **small)
    assert index.KIND == "hnswpca" and index.build_info["target_met"] and len(index) == len(X)
    _, truth = brute_force(X, Q, 10, metric="cosine")
    assert recall(index.search(Q, 10, fetch=lambda want: X[want]).ids, truth) >= 0.95
    rng = np.random.default_rng(3)  # full-rank synthetic data: 2 components keep none of its neighbours
    G = rng.standard_normal((3000, DIM)).astype(np.float32)
    monkeypatch.setattr(auto, "PCA_D", 2)
    monkeypatch.setattr(auto, "PCA_RERANK", 1)
    index = auto.choose_and_build(lambda: ((ids[s:s + 500], G[s:s + 500]) for s in range(0, len(G), 500)), n=len(G),
                                  dim=DIM, fetch=lambda want: G[want], queries=100, target_recall=0.9,
                                  memory_budget="3M", **small)
    assert index.KIND == "hnswsq" and index.build_info["target_met"]  # the next candidate that fits


def test_in_memory_reranks_from_its_own_vectors_equal_to_brute_force_and_survives_save_load(tmp_path, data):
    from audiosim.engine.search.searcher import Searcher

    X, Q = data
    ids = np.arange(len(X), dtype=np.int64) * 3 + 5  # ids with gaps
    index = make_index("hnswpca", dim=DIM, d=24, m=12, in_memory=True)
    for start in range(0, len(X), 700):  # batch after batch, as a build adds them
        index.add(ids[start:start + 700], X[start:start + 700])
    truth = ids[brute_force(X, Q, 10, metric="cosine")[1]]
    got = index.search(Q, 10)  # no fetch: the re-rank reads the vectors the index holds
    assert recall(got.ids.tolist(), truth.tolist()) >= 0.95
    for row in range(len(Q)):  # the scores are exact cosines of the ids returned, best first
        unit = X[(got.ids[row] - 5) // 3]
        unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
        q = Q[row] / np.linalg.norm(Q[row])
        np.testing.assert_allclose(got.scores[row], unit @ q, rtol=1e-5, atol=1e-6)
        one = index.search(Q[row:row + 1], 10)  # the single-query path ranks the same
        np.testing.assert_array_equal(one.ids[0], got.ids[row])
    np.testing.assert_allclose(index.reconstruct(ids[:3]), X[:3] / np.linalg.norm(X[:3], axis=1, keepdims=True),
                               rtol=1e-6)
    index.remove(ids[:5])
    sidecar = index.save(tmp_path / "i")
    assert {"vectors.npy", "vector_ids.npy"} <= set(sidecar["files"]) and sidecar["params"]["in_memory"] is True
    loaded, _ = load_index(tmp_path / "i")
    again = loaded.search(Q, 10)
    np.testing.assert_array_equal(again.ids, index.search(Q, 10).ids)
    assert not np.isin(again.ids, ids[:5]).any()
    raw = bytearray((tmp_path / "i" / "vectors.npy").read_bytes())
    raw[-3] ^= 0xFF
    (tmp_path / "i" / "vectors.npy").write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="garbled"):
        load_index(tmp_path / "i")
    with pytest.raises(VectorIndexError, match="in_memory is true or false"):
        make_index("hnswpca", dim=DIM, in_memory="yes")
    # through a collection and the Searcher, with and without a label filter: the same hits as brute force
    coll, rec = _collection(tmp_path / "c2", X, params={"d": 24, "m": 12, "in_memory": True})
    s = Searcher(coll.root)
    cids = coll.items().ids
    truth = cids[brute_force(X, Q, 10, metric="cosine")[1]]
    found = [[h.id for h in s.search(vector=q, k=10)] for q in Q]
    assert recall(found, truth.tolist()) >= 0.95
    labels = np.array([f"l{i % 7}" for i in range(len(X))])
    allowed = labels == "l3"
    ftruth = cids[allowed][brute_force(X[allowed], Q, 10, metric="cosine")[1]]
    ffound = [[h.id for h in s.search(vector=q, k=10, label="l3")] for q in Q]
    assert all(labels[np.searchsorted(cids, f)].tolist() == ["l3"] * 10 for f in ffound)
    assert recall(ffound, ftruth.tolist()) >= 0.95

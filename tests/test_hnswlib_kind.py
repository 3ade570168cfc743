"""The hnswlib-backed HNSW kind through the store and the Searcher: search, filters, deletes, check."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hnswlib", reason="the hnswlib kind needs the hnswlib extra")

DIM = 16


def test_a_collection_on_the_hnswlib_kind(tmp_path, rng, one_faiss_thread):
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.integrity import check_collection
    from audiosim.engine.store.store import CollectionStore, Rows
    from audiosim.indexes.flat import brute_force

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": DIM, "window_s": 1.0, "hop_s": 0.5}
    pool = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}
    coll = CollectionStore.create(tmp_path / "c", embedder=emb, pooling=pool, index_kind="hnswlib",
                             index_params={"m": 12, "ef_search": 64})
    n = 2000
    X = rng.standard_normal((n, DIM)).astype(np.float32)
    labels = [f"l{i % 7}" for i in range(n)]
    coll.append(Rows(path=[f"/synthetic/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                     offset_s=np.zeros(n), duration_s=np.ones(n), label=labels, embedding=X))
    with coll.writer() as w:
        rec = ensure_index(w)
    assert rec.kind == "hnswlib" and (coll.root / rec.dir / "hnswlib.bin").is_file()
    searcher = Searcher(coll.root)
    Q = rng.standard_normal((30, DIM)).astype(np.float32)
    _, truth = brute_force(X, Q, 10, metric="cosine")
    found = [[h.id for h in searcher.search(vector=q, k=10)] for q in Q]
    assert np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]) >= 0.95
    hits = searcher.search(vector=Q[0], k=5, label="l3")
    allowed = np.flatnonzero(np.array(labels) == "l3")
    s, o = brute_force(X[allowed], Q[:1], 5, metric="cosine")
    assert [h.id for h in hits] == allowed[o[0]].tolist()  # 286 allowed rows: scored exactly
    np.testing.assert_allclose([h.score for h in hits], s[0], rtol=1e-5, atol=1e-6)
    with coll.writer() as w:  # deletes update the saved graph in place (marked deleted)
        w.delete(range(0, n, 2))
        assert ensure_index(w).kind == "hnswlib"
    searcher.refresh()
    assert all(h.id % 2 == 1 for q in Q for h in searcher.search(vector=q, k=10))
    assert check_collection(coll.root).ok

"""Approximate indexes: high recall against brute force, save/load, and clear GPU errors."""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.indexes.flat import FlatIndex, brute_force
from audiosim.indexes.kinds import load_index, make_index


def _clustered(rng, n=3000, dim=32, centers=40):
    c = rng.standard_normal((centers, dim)) * 3
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_recall_against_brute_force_and_round_trip(kind, metric, rng, tmp_path):
    db = _clustered(rng)
    q = db[:100] + 0.1 * rng.standard_normal((100, db.shape[1])).astype(np.float32)
    ids = np.arange(db.shape[0], dtype=np.int64) + 10
    index = make_index(kind, dim=db.shape[1], metric=metric)
    index.add(ids, db)
    res = index.search(q, 10)
    _, ref = brute_force(db, q, 10, metric=metric)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, ids[ref])])
    assert recall >= 0.9, recall
    # the scores of what it returns are the true scores of those ids
    exact = FlatIndex(dim=db.shape[1], metric=metric)
    exact.add(ids, db)
    assert (res.ids[:, 0] == exact.search(q, 1).ids[:, 0]).mean() >= 0.95
    index.save(tmp_path / kind)
    loaded, sidecar = load_index(tmp_path / kind)
    assert type(loaded) is type(index) and sidecar["kind"] == kind and sidecar["params"] == index.params()
    again = loaded.search(q, 10)
    np.testing.assert_array_equal(again.ids, res.ids)


def test_gpu_requests_fail_clearly_without_a_gpu():
    import faiss

    if hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present: the error path does not apply")
    idx = FlatIndex(dim=4, device="gpu")
    idx.add(np.arange(3), np.eye(3, 4, dtype=np.float32))
    with pytest.raises(VectorIndexError, match="faiss-gpu"):
        idx.search(np.ones((1, 4), np.float32), 1)
    with pytest.raises(VectorIndexError, match="HNSW"):
        make_index("hnsw", dim=4, device="gpu")
    with pytest.raises(VectorIndexError, match="unknown index kind"):
        make_index("lsh", dim=4)

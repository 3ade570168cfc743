"""FAISS exact search equals numpy brute force, for cosine and Euclidean, through save/load."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.indexes.flat import FlatIndex, brute_force
from audiosim.indexes.kinds import load_index


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_equals_brute_force(metric, rng, tmp_path):
    db = rng.standard_normal((300, 24)).astype(np.float32)
    q = rng.standard_normal((17, 24)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64) * 3 + 1000  # arbitrary sparse ids
    index = FlatIndex(dim=24, metric=metric)
    index.add(ids, db)
    res = index.search(q, 10)
    ref_scores, ref_pos = brute_force(db, q, 10, metric=metric)
    np.testing.assert_array_equal(res.ids, ids[ref_pos])
    np.testing.assert_allclose(res.scores, ref_scores, rtol=1e-4, atol=1e-4)
    index.save(tmp_path / "idx", extra={"collection_revision": 3})
    loaded, sidecar = load_index(tmp_path / "idx")
    assert sidecar["metric"] == metric and sidecar["count"] == 300 and sidecar["collection_revision"] == 3
    res2 = loaded.search(q, 10)
    np.testing.assert_array_equal(res2.ids, res.ids)
    np.testing.assert_allclose(res2.scores, res.scores)


def test_cosine_scores_are_similarities_l2_are_distances():
    db = np.array([[1, 0], [0, 2], [3, 3]], np.float32)
    cos = FlatIndex(dim=2, metric="cosine")
    cos.add(np.arange(3), db)
    r = cos.search(np.array([[2, 0]], np.float32), 3)
    assert r.ids[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(r.scores[0], [1.0, np.sqrt(0.5), 0.0], atol=1e-6)
    l2 = FlatIndex(dim=2, metric="l2")  # the old name is accepted as an alias
    assert l2.metric == "euclidean"
    l2.add(np.arange(3), db)
    r = l2.search(np.array([[1, 0]], np.float32), 3)
    assert r.ids[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(r.scores[0], [0.0, np.sqrt(5), np.sqrt(13)], atol=1e-6)


def test_k_larger_than_index_marks_missing():
    idx = FlatIndex(dim=2, metric="l2")
    idx.add(np.array([7]), np.ones((1, 2), np.float32))
    r = idx.search(np.ones((1, 2), np.float32), 3)
    assert r.ids[0].tolist() == [7, -1, -1] and np.isinf(r.scores[0, 1:]).all()


def test_errors():
    idx = FlatIndex(dim=3)
    with pytest.raises(VectorIndexError):
        idx.add(np.arange(2), np.zeros((2, 4), np.float32))
    with pytest.raises(VectorIndexError):
        FlatIndex(dim=3, metric="manhattan")
    with pytest.raises(VectorIndexError):
        load_index("/nonexistent/dir")


def test_indexes_and_eval_import_no_heavy_frameworks():
    root = Path(__file__).resolve().parents[1]
    banned = {"tensorflow", "torch", "pyarrow", "tensorflow_hub"}
    for pkg in ("indexes", "eval"):
        for f in (root / pkg).glob("*.py"):
            if f.name in ("bench.py",):  # the benchmark runner reads collections (pyarrow) by design
                continue
            tree = ast.parse(f.read_text())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for n in names:
                    assert n.split(".")[0] not in banned, f"{f} imports {n}"

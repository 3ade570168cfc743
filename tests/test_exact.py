"""indexes/exact.py, the one exact scorer, against hand-computed values."""

from __future__ import annotations

import numpy as np

from audiosim.indexes import exact


def test_cosine_and_euclidean_by_hand():
    X = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    q = np.array([1.0, 0.0], np.float32)
    assert np.allclose(exact.scores(X, q, "cosine"), [0.6, 1.0, 0.0])
    d = exact.scores(X, q, "euclidean")
    assert np.allclose(d, [np.sqrt(20.0), 0.0, np.sqrt(5.0)])
    assert np.allclose(exact.scores(X, q, "l2", norms=exact.row_norms(X, "euclidean")), d, atol=1e-6)


def test_top_k_best_first_ties_by_smaller_id():
    s = np.array([0.5, 0.9, 0.5, 0.1], np.float32)
    ids = np.array([40, 10, 30, 20])
    assert [list(a) for a in exact.top_k(s, ids, 3, "cosine")] == [[np.float32(0.9), np.float32(0.5), np.float32(0.5)],
                                                                    [10, 30, 40]]
    assert list(exact.top_k(s, ids, 2, "euclidean")[1]) == [20, 30]
    assert exact.top_k(s, ids, 0, "cosine")[1].size == 0 and exact.top_k(s, ids, 9, "cosine")[1].size == 4

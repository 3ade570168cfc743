"""Exact scoring, written once: the scores of stored rows against a query, and the best ``k`` of them.

Used by the indexes' exact re-ranking (:meth:`audiosim.indexes.base.VectorIndex.search` with
``rerank``), by the search planner's exact filtered search
(:func:`audiosim.engine.search.planner.exact_scores`) and by the reference search
:func:`audiosim.indexes.flat.brute_force`.

Scores are in the index's space: ``cosine`` -- the cosine similarity of each row with a unit
query (higher is closer); ``euclidean`` -- the Euclidean distance (lower is closer). Ties are
broken by the smaller id, so every caller ranks equal scores the same way.
"""

from __future__ import annotations

import numpy as np

from audiosim.indexes.vectors import Metric


def row_norms(X: np.ndarray, metric: Metric | str) -> np.ndarray:
    """What :func:`scores` needs per row, computed once for rows scored against many queries: the L2 norm
    (cosine, at least 1e-12) or the squared L2 norm (euclidean)."""
    sq = np.einsum("ij,ij->i", X, X)
    return np.maximum(np.sqrt(sq), X.dtype.type(1e-12)) if Metric.parse(metric) is Metric.COSINE else sq


def scores(X: np.ndarray, q: np.ndarray, metric: Metric | str, *, norms: np.ndarray | None = None) -> np.ndarray:
    """Exact scores of the rows of ``X`` ([n, d]) against one query ``q`` ([d]; unit length for cosine).

    Cosine divides the inner products by the row norms instead of normalising every row.
    Euclidean is computed from the differences, or, when ``norms`` (:func:`row_norms`, squared)
    are given for rows scored again and again, as ``|x|^2 - 2 x.q + |q|^2``.
    """
    if Metric.parse(metric) is Metric.COSINE:
        return (X @ q) / (row_norms(X, Metric.COSINE) if norms is None else norms)
    if norms is None:
        return np.sqrt(np.maximum(((X - q) ** 2).sum(axis=1), 0.0))
    return np.sqrt(np.maximum(norms - 2 * (X @ q) + q @ q, 0.0))


def top_k(s: np.ndarray, ids: np.ndarray, k: int, metric: Metric | str) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of scores ``s`` of ``ids``, best first (ties: smaller id first): ``(scores, ids)``."""
    k = min(int(k), s.size)
    if k <= 0:
        return s[:0], ids[:0]
    key = -s if Metric.parse(metric).higher_is_closer else s
    if k < s.size:  # the k best, and every row tied with the k-th, so the tie-break by id decides
        top = np.flatnonzero(key <= key[np.argpartition(key, k - 1)[k - 1]])
    else:
        top = np.arange(s.size)
    order = top[np.lexsort((ids[top], key[top]))][:k]
    return s[order], ids[order]

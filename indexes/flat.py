"""Exact search (FAISS ``IndexFlatIP`` / ``IndexFlatL2``) and the numpy reference it is checked against."""

from __future__ import annotations

import numpy as np

from audiosim.indexes.base import VectorIndex
from audiosim.indexes import exact
from audiosim.indexes.vectors import Metric, l2_normalize


class FlatIndex(VectorIndex):
    """Exact nearest neighbours: every query is compared with every vector."""

    KIND = "flat"

    def _make_base(self, faiss):
        return faiss.IndexFlatIP(self.dim) if self.metric == "cosine" else faiss.IndexFlatL2(self.dim)


def brute_force(database: np.ndarray, queries: np.ndarray, k: int, *, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference numpy search in float64 (:mod:`audiosim.indexes.exact`): (scores, row positions) best first."""
    metric = Metric.parse(metric)
    db = np.asarray(database, dtype=np.float64)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    if metric is Metric.COSINE:
        q = l2_normalize(q, dtype=np.float64)
    rows = np.arange(db.shape[0])
    found = [exact.top_k(exact.scores(db, qi, metric), rows, k, metric) for qi in q]
    return np.array([s for s, _ in found]).reshape(len(q), -1), np.array([r for _, r in found]).reshape(len(q), -1)

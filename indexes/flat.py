"""Exact search (FAISS ``IndexFlatIP`` / ``IndexFlatL2``) and the numpy reference it is checked against."""

from __future__ import annotations

import numpy as np

from audiosim.indexes.base import VectorIndex
from audiosim.indexes.vectors import canonical_metric, l2_normalize


class FlatIndex(VectorIndex):
    """Exact nearest neighbours: every query is compared with every vector."""

    KIND = "flat"

    def _make_base(self, faiss):
        return faiss.IndexFlatIP(self.dim) if self.metric == "cosine" else faiss.IndexFlatL2(self.dim)


def brute_force(database: np.ndarray, queries: np.ndarray, k: int, *, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference numpy search: (scores, row positions) sorted best first."""
    metric = canonical_metric(metric)
    db = np.asarray(database, dtype=np.float64)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    if metric == "cosine":
        s = l2_normalize(q, dtype=np.float64) @ l2_normalize(db, dtype=np.float64).T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = np.sqrt(np.maximum(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1), 0.0))
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order

"""Exact neighbours accumulated over batches, and recall@k that counts ties as hits.

:class:`ExactTopK` keeps, for a few queries, the exact best neighbours over every batch it
is shown — the ground truth of a collection that is never in memory at once (the streaming
build feeds it the same batches it indexes). ``query_ids`` excludes each query's own id, so
queries drawn from the data are held out from their own answer.

:func:`recall_at_k` is the fraction of the true top ``k`` an index found, where the places
taken by vectors tied with the true ``k``-th (within a relative ``tol``) may be filled by any of
them: collections with exact duplicates (one clip indexed under several names) have many
equally right answers, yet every neighbour strictly better than the ``k``-th must be found.
:class:`ExactTopK` keeps ``4 * k`` neighbours so that ties past the ``k``-th are known.
"""

from __future__ import annotations

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.vectors import Metric, l2_normalize

CHUNK_ROWS = 16384
TIE_TOL = 1e-5


class ExactTopK:
    """Exact top-``keep`` neighbours of fixed queries over streamed ``(ids, vectors)`` batches."""

    def __init__(self, queries: np.ndarray, *, k: int, metric: str, query_ids: np.ndarray | None = None,
                 keep: int | None = None) -> None:
        self.metric = Metric.parse(metric)
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        self.queries = l2_normalize(q) if self.metric == "cosine" else np.ascontiguousarray(q)
        self.k = int(k)
        self.keep = int(keep or 4 * self.k)
        nq = self.queries.shape[0]
        self.query_ids = None if query_ids is None else np.asarray(query_ids, dtype=np.int64).reshape(nq)
        self._worst = -np.inf if self.metric == "cosine" else np.inf
        self._scores = np.full((nq, self.keep), self._worst, np.float32)
        self._ids = np.full((nq, self.keep), -1, np.int64)
        self._qnorm = (self.queries.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        self.seen = 0

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if x.shape[0] != ids.size or x.shape[1] != self.queries.shape[1]:
            raise VectorIndexError(f"batch of {ids.size} ids and vectors {x.shape} does not fit queries of dim "
                                   f"{self.queries.shape[1]}")
        for start in range(0, ids.size, CHUNK_ROWS):
            self._update(ids[start:start + CHUNK_ROWS], x[start:start + CHUNK_ROWS])
        self.seen += ids.size

    def _update(self, ids: np.ndarray, x: np.ndarray) -> None:
        if self.metric == "cosine":
            s = self.queries @ l2_normalize(x).T
        else:
            s = self._qnorm[:, None] + (x.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)[None, :]
            s -= 2 * (self.queries @ x.T)
            np.maximum(s, 0, out=s)
        if self.query_ids is not None:
            s[self.query_ids[:, None] == ids[None, :]] = self._worst
        s = np.concatenate([self._scores, s], axis=1)
        i = np.concatenate([self._ids, np.broadcast_to(ids, (s.shape[0], ids.size))], axis=1)
        key = -s if self.metric == "cosine" else s
        part = np.argpartition(key, self.keep - 1, axis=1)[:, :self.keep] if key.shape[1] > self.keep else \
            np.broadcast_to(np.arange(key.shape[1]), key.shape)
        ks = np.take_along_axis(key, part, axis=1)
        order = np.take_along_axis(part, np.argsort(ks, axis=1, kind="stable"), axis=1)
        self._scores = np.take_along_axis(s, order, axis=1).astype(np.float32)
        self._ids = np.take_along_axis(i, order, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) best first, ``keep`` per query (cosine similarities or Euclidean distances; -1 = none)."""
        if self.metric == "euclidean":
            return np.sqrt(self._scores), self._ids.copy()
        return self._scores.copy(), self._ids.copy()


def recall_at_k(found_ids: np.ndarray, truth_scores: np.ndarray, truth_ids: np.ndarray, k: int, *,
                metric: str, tol: float = TIE_TOL) -> float:
    """Mean over queries of :func:`recalls_at_k` (1.0 when no query has a true neighbour)."""
    r = recalls_at_k(found_ids, truth_scores, truth_ids, k, metric=metric, tol=tol)
    return float(r.mean()) if r.size else 1.0


def recalls_at_k(found_ids: np.ndarray, truth_scores: np.ndarray, truth_ids: np.ndarray, k: int, *,
                 metric: str, tol: float = TIE_TOL) -> np.ndarray:
    """Per query: (strictly-better neighbours found + min(tied ones found, places left)) / min(k, #true);
    queries without any true neighbour are left out."""
    metric = Metric.parse(metric)
    found = np.asarray(found_ids)[:, :k]
    recalls = []
    for f, s, t in zip(found, np.asarray(truth_scores), np.asarray(truth_ids)):
        valid = t >= 0
        if not valid.any():
            continue
        s, t = s[valid], t[valid]
        want = min(k, t.size)
        thr = s[want - 1]
        margin = tol * max(1.0, abs(float(thr)))
        if metric == "cosine":
            better, tied = s > thr + margin, np.abs(s - thr) <= margin
        else:
            better, tied = s < thr - margin, np.abs(s - thr) <= margin
        f = f[f >= 0]
        hits = np.isin(f, t[better]).sum() + min(np.isin(f, t[tied]).sum(), want - better.sum())
        recalls.append(hits / want)
    return np.asarray(recalls, dtype=np.float64)

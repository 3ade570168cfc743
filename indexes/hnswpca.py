"""HNSW over PCA-reduced vectors with an exact re-rank (kind ``hnswpca``): a small, quickly built graph.

A graph walk over 1024-d float vectors reads 4 KiB per visited node; audio embeddings have a low
intrinsic dimension, so the walk loses little when it runs on their first ``d`` principal
components (default ``min(128, dim)``: 512 bytes per node) and the candidates it finds are re-scored
exactly (recall@10 0.967 at 100k x 1024 audio-like vectors with the defaults, issue 22):

* **train** fits the projection on a sample (at most :data:`PCA_TRAIN_ROWS` rows of the
  prepared vectors -- unit length for cosine): their mean and the top ``d`` eigenvectors of their
  covariance;
* **add** projects the vectors (``x @ P.T``; distances between projections do not depend on the
  mean) into an hnswlib graph (``m`` 16 links per node by default) in its ``l2`` space (Euclidean
  distance is what a projection keeps; for unit vectors ``|a - b|^2 = 2 - 2 cos(a, b)``);
* **search** projects the query, walks the graph for ``rerank x k`` candidates (default 2 x k;
  ``ef_search``, default 32 and the tuned knob, at least that many) and re-scores them with the stored full vectors from
  ``fetch`` (the collection's vector files, read exactly: O(candidates)), so the scores returned
  are exact. ``rerank=0`` returns the graph's approximate scores instead (``1 - |a - b|^2 / 2``
  in the reduced space for cosine) and needs no ``fetch``.

``in_memory=True`` keeps the full prepared vectors in the index instead (``vectors.npy`` and
``vector_ids.npy`` beside the graph, with their sha256; about the ``hnsw`` kind's memory): the re-rank
then reads them with one lookup and needs no ``fetch`` -- the fastest single-query kind in
docs/search-speed.md (run 5). ``reconstruct`` then returns the exact vectors. ``auto`` never sets it (it
picks this kind to save memory).

Everything else is the ``hnswlib`` kind's (:mod:`audiosim.indexes.hnswlib_index`): int64 ids,
deletes marked in the graph and kept as tombstones, ``allowed_ids`` through hnswlib's filtered walk
(the planner's filtered searches run inside it). The index holds ``d`` floats per vector plus the links
(about a sixth of the ``hnsw`` kind's memory at 1024-d), not the full vectors: those stay in the
collection. On disk: ``hnswlib.bin`` and ``pca.npy`` (row 0 the mean, then the ``d`` components),
each with its size and sha256 in ``index.json``. ``reconstruct`` returns the projection mapped back
(an approximation, as for other compressed kinds). Needs hnswlib (``audiosim[hnswlib]``).

Speed: the walk is bound by memory latency (one random access per visited node) more than by the
bytes a node holds, and the re-rank reads ``rerank x k`` random rows of the vector files, so on
the issue-22 VM this kind answered slightly fewer unfiltered queries per second through the
Searcher than the ``hnswlib`` kind (5,160 against 5,627 at recall 0.96, docs/search-speed.md run 4)
and the most with a 20 % filter (2,137); it builds about 3x faster and holds a sixth of the memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import _write_npy, file_meta
from audiosim.indexes.hnswlib_index import HnswlibIndex, _hnswlib

PCA_FILE = "pca.npy"
FULL_FILE = "vectors.npy"  # in_memory: the full prepared vectors, one row per graph node (insertion order)
FULL_IDS_FILE = "vector_ids.npy"  # in_memory: the id of each of those rows
PCA_TRAIN_ROWS = 25_000  # rows the projection is fitted on (a seeded uniform subsample of what train() gets)
DEFAULT_D = 128
DEFAULT_RERANK = 2  # candidates re-ranked: 2 x k
DEFAULT_M = 16  # links per node: with 32 recall was no higher at 100k (0.959 against 0.967 at ef 32, rerank 2)


class HnswPcaIndex(HnswlibIndex):
    """HNSW (hnswlib) over the first ``d`` principal components, candidates re-ranked exactly."""

    KIND = "hnswpca"
    TRAINED = True

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = DEFAULT_RERANK,
                 d: int | None = None, m: int = DEFAULT_M, ef_construction: int = 80, ef_search: int = 32,
                 in_memory: bool = False) -> None:
        d = min(DEFAULT_D, int(dim)) if d is None else d
        if not 1 <= int(d) <= int(dim):
            raise VectorIndexError(f"the hnswpca index reduces dim {dim} to d components: d must be in 1..{dim}, "
                                   f"got {d}")
        if type(in_memory) is not bool:
            raise VectorIndexError(f"in_memory is true or false, got {in_memory!r}")
        self.d = int(d)
        self.in_memory = in_memory
        self._full = FullVectors(int(dim)) if in_memory else None
        self._mean: np.ndarray | None = None
        self._proj: np.ndarray | None = None  # [dim, d]: the graph holds x @ proj
        self._shift: np.ndarray | None = None  # mean @ proj
        self._explained: float | None = None  # fraction of the training sample's variance the d components keep
        super().__init__(dim=dim, metric=metric, device=device, rerank=rerank, m=m, ef_construction=ef_construction,
                         ef_search=ef_search)

    # ------------------------------------------------------------------ the reduced space
    def _new_graph(self):
        return _hnswlib().Index(space="l2", dim=self.d)

    def _graph_dim(self) -> int:
        return self.d

    def _to_graph(self, x: np.ndarray) -> np.ndarray:
        if self._proj is None:
            raise VectorIndexError("this hnswpca index is not trained: train() it on a sample (or add vectors) first")
        return x @ self._proj  # not centred: distances between projections do not depend on the mean

    def _graph_scores(self, dist: np.ndarray) -> np.ndarray:
        return (1.0 - 0.5 * dist) if self.metric == "cosine" else dist

    def _set_projection(self, mean: np.ndarray, components: np.ndarray) -> None:
        self._mean = np.ascontiguousarray(mean, dtype=np.float32)
        self._proj = np.ascontiguousarray(components.T, dtype=np.float32)
        self._shift = (self._mean @ self._proj).astype(np.float32)

    # ------------------------------------------------------------------ state
    @property
    def is_trained(self) -> bool:
        return self._proj is not None

    def params(self) -> dict:
        return {**super().params(), "d": self.d, **({"in_memory": True} if self.in_memory else {})}

    def code_bytes(self) -> int:
        return 4 * self.d

    def estimate_bytes(self, n: int, *, ondisk: bool = False) -> int:
        # the reduced vectors and links (as the hnswlib kind counts them), plus the projection (and the full
        # vectors with their ids and the id -> row table when they are kept in memory)
        return super().estimate_bytes(n) + 4 * (self.d + 1) * self.dim + (
            int(n) * (4 * self.dim + 8 + 4) if self.in_memory else 0)

    def _train(self, x: np.ndarray) -> None:
        if x.shape[0] > PCA_TRAIN_ROWS:
            x = x[np.sort(np.random.default_rng(0).choice(x.shape[0], PCA_TRAIN_ROWS, replace=False))]
        mean = x.mean(axis=0, dtype=np.float64)
        xc = (x - mean).astype(np.float32)
        cov = (xc.T @ xc).astype(np.float64) / max(1, x.shape[0] - 1)
        values, vectors = np.linalg.eigh(cov)  # ascending
        top = np.argsort(values)[::-1][: self.d]
        self._set_projection(mean, vectors[:, top].T)
        self._explained = float(values[top].sum() / max(values.sum(), 1e-30))

    def _add(self, ids: np.ndarray, x: np.ndarray) -> None:
        super()._add(ids, x)
        if self._full is not None:
            self._full.add(ids, x)

    def sidecar(self) -> dict:
        return {**super().sidecar(), "explained_variance": None if self._explained is None else round(self._explained, 5)}

    # ------------------------------------------------------------------ reading back
    def _from_graph(self, y: np.ndarray) -> np.ndarray:
        """The reduced vectors mapped back (approximate: what the ``d`` components keep)."""
        return ((y - self._shift) @ self._proj.T + self._mean).astype(np.float32)

    def _reconstruct_many(self, arr: np.ndarray) -> np.ndarray:
        if self._full is not None:  # the full vectors are here: exact
            return self._full.get(arr)
        return super()._reconstruct_many(arr)

    # ------------------------------------------------------------------ searching
    def search_prepared(self, q: np.ndarray, k: int, *, fetch=None, rerank: int | None = None,
                        allowed: np.ndarray | None = None, knob: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As the hnswlib kind's; ``in_memory``: the re-rank reads the vectors held here, not ``fetch``."""
        return super().search_prepared(q, k, fetch=self._full.get if self._full is not None else fetch,
                                       rerank=rerank, allowed=allowed, knob=knob)

    def _rerank_one(self, q: np.ndarray, cand: np.ndarray, k: int, fetch) -> tuple[np.ndarray, np.ndarray]:
        if self._full is None or self.metric != "cosine" or cand.size == 0 or cand[-1] < 0:
            return super()._rerank_one(q, cand, k, fetch)
        # the held vectors are unit length and were checked finite when added: the inner products are the cosines
        s = self._full.get(cand) @ q
        order = np.lexsort((cand, -s))[:k]  # ties: the smaller id first, as exact.top_k ranks
        if order.size < k:
            return super()._rerank_one(q, cand, k, fetch)
        return s[order][None, :], cand[order][None, :]

    # ------------------------------------------------------------------ persistence
    def _write_extra(self, d: Path) -> dict:
        if self._proj is None:
            raise VectorIndexError("cannot save an untrained hnswpca index: train() it or add vectors first")
        files = {PCA_FILE: file_meta(_write_npy(d / PCA_FILE, np.vstack([self._mean[None, :], self._proj.T])))}
        if self._full is not None:
            ids, rows = self._full.arrays()
            files[FULL_IDS_FILE] = file_meta(_write_npy(d / FULL_IDS_FILE, ids))
            files[FULL_FILE] = file_meta(_write_npy(d / FULL_FILE, rows))
        return files

    def _load_extra(self, d: Path, sidecar: dict) -> None:
        path = d / PCA_FILE
        try:
            stacked = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise VectorIndexError(f"cannot read {path}: {e}; rebuild the index with `audiosim index`") from None
        if stacked.shape != (self.d + 1, self.dim):
            raise VectorIndexError(f"{path} holds a {stacked.shape} projection, the sidecar says "
                                   f"{(self.d + 1, self.dim)}; rebuild the index with `audiosim index`")
        self._set_projection(stacked[0], stacked[1:])
        self._explained = sidecar.get("explained_variance")
        if self._full is not None:
            try:
                ids = np.load(d / FULL_IDS_FILE, allow_pickle=False)
                rows = np.load(d / FULL_FILE, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise VectorIndexError(f"cannot read the vectors of {d}: {e}; rebuild the index with `audiosim index`"
                                       ) from None
            if ids.ndim != 1 or rows.shape != (ids.size, self.dim) or ids.size != int(sidecar.get("count", 0)) + int(
                    sidecar.get("removed", 0)):
                raise VectorIndexError(f"{d / FULL_FILE} holds {rows.shape} vectors for {ids.shape} ids, the sidecar "
                                       f"says {sidecar.get('count')} + {sidecar.get('removed')} removed of dim {self.dim}; "
                                       "rebuild the index with `audiosim index`")
            self._full.add(ids.astype(np.int64), rows.astype(np.float32, copy=False))


class FullVectors:
    """The full vectors of an ``in_memory`` hnswpca index: rows in the order they were added, and an id -> row table.

    Rows grow by half their capacity at a time (a build adds batch after batch); the table is a dense array
    indexed by id while the ids are dense (at most 4 x the rows plus 2^20), else a sorted id array searched.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self._rows = np.zeros((0, dim), np.float32)
        self._ids = np.zeros(0, np.int64)
        self._row_of: np.ndarray | None = np.zeros(0, np.int32)  # dense: id -> row (-1: none)
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # sparse: (ids sorted, their rows)

    def add(self, ids: np.ndarray, x: np.ndarray) -> None:
        need = self.n + ids.size
        if need > self._rows.shape[0]:
            cap = max(need, self._rows.shape[0] + self._rows.shape[0] // 2)
            rows = np.empty((cap, self.dim), np.float32)
            rows[:self.n] = self._rows[:self.n]
            ids_ = np.empty(cap, np.int64)
            ids_[:self.n] = self._ids[:self.n]
            self._rows, self._ids = rows, ids_
        start, self.n = self.n, need
        self._rows[start:need] = x
        self._ids[start:need] = ids
        if not ids.size:
            return
        top = max(int(ids.max()) + 1, self._row_of.size if self._row_of is not None else 0)
        if self._row_of is not None and top <= 4 * need + (1 << 20) and need < (1 << 31):
            if top > self._row_of.size:
                self._row_of = np.concatenate([self._row_of, np.full(top - self._row_of.size, -1, np.int32)])
            self._row_of[ids] = np.arange(start, need, dtype=np.int32)  # an id added again: its latest row
        else:  # sparse ids: a sorted table (the latest row of an id added twice wins, as in the graph)
            order = np.argsort(self._ids[:need], kind="stable")
            keys = self._ids[:need][order]
            last = np.r_[keys[1:] != keys[:-1], True]
            self._row_of, self._sorted = None, (keys[last], order[last])

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids`` (ids held here; a copy)."""
        if self._row_of is not None:
            return self._rows[self._row_of[ids]]
        keys, rows = self._sorted
        return self._rows[rows[np.searchsorted(keys, ids)]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, rows) in the order added."""
        return self._ids[:self.n], self._rows[:self.n]

"""The vector index interface shared by every FAISS index kind: ids in, scored ids out.

* ``cosine``: vectors are L2-normalised and searched by inner product; scores are cosine
  similarities (higher is closer).
* ``euclidean``: scores are Euclidean distances (lower is closer).

Ids are the caller's int64 ids, never reused after a removal. A search may be restricted to a
set of allowed ids; the restriction runs inside FAISS (an ``IDSelector`` in the search
parameters), so ``k`` hits come back whenever at least ``k`` allowed vectors exist (exact
kinds) rather than a post-filter of the top ``k``.

Lifecycle: ``make_index`` (kinds.py) -> :meth:`VectorIndex.train` on a sample (kinds that learn
a structure; ``add`` on an untrained index trains on its first batch) -> :meth:`~VectorIndex.add`
batch by batch -> :meth:`~VectorIndex.search` -> :meth:`~VectorIndex.save`. ``add`` on a trained
index never retrains; :func:`audiosim.indexes.maintenance.needs_retrain` says when to rebuild.
:meth:`~VectorIndex.remove` drops ids (kinds FAISS cannot remove from, HNSW and on-disk IVF
lists, keep the removed ids as tombstones that every search excludes inside FAISS).

Exact re-ranking: ``search(..., fetch=f, rerank=r)`` takes the index's top ``r * k``
candidates and re-scores them exactly with ``f(ids: int64[n]) -> float32[n, dim]``, a callable
returning the stored float vectors as they were added (the index normalises them for cosine),
so the scores a re-ranked search returns are exact. An index made with ``rerank=r > 0`` (as
:func:`audiosim.indexes.auto.choose_and_build` makes compressed ones) needs ``fetch`` on every
search, or ``rerank=0`` to accept approximate scores.

On disk an index is a directory: ``faiss.index``, sometimes ``lists.<hex>.ivfdata`` (IVF
inverted lists kept on disk and memory-mapped, see ivf.py) and ``removed.npy`` (tombstones),
plus an ``index.json`` sidecar written last: kind, parameters, metric, dim, count, resident
``memory_bytes``, ``trained_for`` (the number of vectors the trained structure was built for),
``build`` (how :mod:`audiosim.indexes.auto` chose and tuned it) and ``files`` (bytes and sha256
of every file, except the sha256 of ``.ivfdata`` lists, which are checked by size only: they may
be larger than RAM). :func:`audiosim.indexes.kinds.load_index` reads any kind back and verifies
the files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.files import atomic_path, sha256_file, write_bytes_atomic, write_json_atomic
from audiosim.indexes import exact
from audiosim.indexes.vectors import Metric, l2_normalize

INDEX_FILE = "faiss.index"
SIDECAR = "index.json"
REMOVED_FILE = "removed.npy"
FORMAT = 2

Fetch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SearchResult:
    """``scores[q, r]`` and ``ids[q, r]`` for query q and rank r; missing neighbours have id -1."""

    scores: np.ndarray
    ids: np.ndarray
    metric: str

    @property
    def higher_is_closer(self) -> bool:
        return self.metric == "cosine"


def id_array(ids) -> np.ndarray:
    """``ids`` as a contiguous 1-D int64 array (``ids`` itself when it is one already)."""
    if type(ids) is np.ndarray and ids.dtype == np.int64 and ids.ndim == 1 and ids.flags.c_contiguous:
        return ids
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())


def merge_topk(scores: list[np.ndarray], ids: list[np.ndarray], k: int, *, higher_is_closer: bool):
    """Best ``k`` of several (scores, ids) result blocks per query; -1 ids sort last."""
    s = np.concatenate(scores, axis=1)
    i = np.concatenate(ids, axis=1)
    key = np.where(i < 0, np.inf, -s if higher_is_closer else s)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


class VectorIndex:
    """Base class of the FAISS index kinds.

    Subclasses say how the FAISS index is made (:meth:`_make_base`), trained (:meth:`_train`),
    configured after loading (:meth:`_configure`), which search parameters carry an id
    selector (:meth:`_search_params`) and how much memory it holds (:meth:`memory_bytes`).

    ``device="gpu"`` searches on all GPUs FAISS can see (needs a GPU build of FAISS); the
    default ``"cpu"`` never touches one. Filtered searches and searches of an index holding
    tombstones run on the CPU copy (FAISS GPU indexes take no id selector). Saved files always
    hold the CPU index.
    """

    KIND = "base"
    GPU = True  # whether FAISS can search this kind on a GPU
    ID_MAP = True  # wrap in IndexIDMap2 (False: the FAISS index stores the ids itself, as IVF does)
    NATIVE_REMOVE = True  # False: removed ids become tombstones
    TRAINED = False  # whether the kind learns a structure from data (the retrain policy applies)
    KNOB: str | None = None  # the search-time speed/recall attribute tune() adjusts
    FILTER_INSIDE = True  # False: a filter inside the index loses recall (graphs); filtered searches post-filter
    FILTER_WIDENS = True  # a filtered search widens the knob by 1 / selectivity (IVF: only that share of a cell
    # counts); False: the search itself goes on past the rejected vectors (hnswlib's filtered walk)
    PLAIN_SEARCH = True  # an unfiltered search at the index's own knob needs no FAISS parameter object

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = 0) -> None:
        import faiss

        if device not in ("cpu", "gpu"):
            raise VectorIndexError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and not self.GPU:
            raise VectorIndexError(f"FAISS has no GPU {self.KIND.upper()} search; use device='cpu', or the flat or ivf kinds on a GPU")
        self.metric = Metric.parse(metric)  # an UnknownMetricError is a VectorIndexError
        if int(dim) < 1:
            raise VectorIndexError(f"dim must be >= 1, got {dim}")
        if int(rerank) < 0:
            raise VectorIndexError(f"rerank must be >= 0 (0 = no exact re-ranking), got {rerank}")
        self.dim = int(dim)
        self.device = device
        self.rerank = int(rerank)
        self.trained_for: int | None = None
        self.build_info: dict = {}
        self._gpu_index = None
        self._removed = np.zeros(0, np.int64)
        self._removed_sel = None
        base = self._make_base(faiss)
        self._index = faiss.IndexIDMap2(base) if self.ID_MAP else base

    # ------------------------------------------------------------------ for subclasses
    def _faiss_metric(self, faiss):
        return faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2

    def _make_base(self, faiss):  # pragma: no cover - abstract
        raise NotImplementedError

    def _train(self, x: np.ndarray) -> None:
        """Learn the kind's structure from prepared vectors ``x``."""
        self._index.train(x)

    def _configure(self) -> None:
        """Apply search-time parameters to a freshly loaded FAISS index."""

    def _search_params(self, selector, knob: int | None = None):
        """FAISS search parameters carrying ``selector`` and the kind's search settings (``knob``: this call's value
        of :attr:`KNOB` instead of the index's own)."""
        import faiss

        return faiss.SearchParameters(sel=selector)

    @staticmethod
    def _io_flags(faiss) -> int:
        """Extra FAISS read flags for this kind."""
        return 0

    def params(self) -> dict:
        """Construction parameters recorded in the sidecar (``make_index(kind, **params)`` remakes it)."""
        return {"rerank": self.rerank}

    def code_bytes(self) -> int:
        """Bytes per stored vector in the FAISS structure (codes, without ids or links)."""
        return 4 * self.dim

    def estimate_bytes(self, n: int, *, ondisk: bool = False) -> int:
        """Resident bytes this kind, with these parameters, needs for ``n`` vectors (``ondisk``: lists mapped)."""
        return int(n) * (self.code_bytes() + (48 if self.ID_MAP else 8))

    def memory_bytes(self) -> int:
        """Resident bytes of the index (codes, ids, links, centroids), excluding memory-mapped lists."""
        return self.estimate_bytes(self._ntotal()) + 8 * self.removed_count

    def knob_values(self, k: int) -> list[int]:
        """Ascending candidate values of :attr:`KNOB` for :func:`audiosim.indexes.auto.tune`."""
        return []

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self._ntotal() - int(self._removed.size)

    def _ntotal(self) -> int:
        """Vectors in the FAISS structure(s), tombstoned ones included."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def removed_count(self) -> int:
        """Tombstones held (removed ids still occupying space until a rebuild)."""
        return int(self._removed.size)

    def set_knob(self, value: int) -> None:
        """Set the search-time knob (``nprobe``, ``ef_search``) tune() adjusts."""
        if self.KNOB is None:
            raise VectorIndexError(f"the {self.KIND} index has no search-time parameter to set")
        setattr(self, self.KNOB, int(value))
        self._configure()

    def _searcher(self):
        if self.device == "cpu":
            return self._index
        if self._gpu_index is None:
            import faiss

            if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() < 1:
                raise VectorIndexError(
                    "device='gpu' but this FAISS build sees no GPU; install faiss-gpu on a CUDA machine or use device='cpu'"
                )
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            except RuntimeError as e:
                raise VectorIndexError(f"FAISS cannot search this {self.KIND} index on a GPU ({e}); "
                                       "use device='cpu'") from None
        return self._gpu_index

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Vectors as FAISS stores them: float32, C-contiguous, unit length for cosine."""
        if not (type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous):
            x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise VectorIndexError(f"vectors have shape {x.shape}, the index takes [n, {self.dim}]")
        if not np.isfinite(x).all():
            raise VectorIndexError("vectors contain NaN or infinity; drop or repair those rows before indexing")
        if self.metric != "cosine":
            return x
        return x / np.maximum(np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True)), np.float32(1e-12))  # = l2_normalize

    # ------------------------------------------------------------------ building
    def train(self, vectors: np.ndarray) -> VectorIndex:
        """Learn the kind's structure (k-means cells, codebooks) from a sample; a no-op for kinds without one."""
        if not self.TRAINED and self.is_trained:
            return self
        if self.is_trained:
            raise VectorIndexError(f"this {self.KIND} index is already trained; make a new index to retrain")
        x = self.prepare(vectors)
        if x.shape[0] < 1:
            raise VectorIndexError("cannot train on zero vectors")
        self._train(x)
        return self

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ``ids``; an untrained index first trains on this batch. Never retrains."""
        ids = id_array(ids)
        x = self.prepare(vectors)
        if ids.shape[0] != x.shape[0]:
            raise VectorIndexError(f"{ids.shape[0]} ids for {x.shape[0]} vectors")
        if ids.size == 0:
            return
        if self._removed.size and np.isin(ids, self._removed).any():
            raise VectorIndexError("some ids were removed from this index before; ids are never reused: "
                                   "give new ids, or rebuild the index")
        if not self.is_trained:
            self._train(x)
        self._add(ids, x)
        self._gpu_index = None

    def _add(self, ids: np.ndarray, x: np.ndarray) -> None:
        self._index.add_with_ids(x, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Drop vectors by id; returns how many were removed (unknown ids are ignored)."""
        arr = np.unique(id_array(ids))
        if arr.size == 0 or len(self) == 0:
            return 0
        removed = self._remove(arr)
        self._gpu_index = None
        return removed

    def _remove(self, ids: np.ndarray) -> int:
        import faiss

        if self.NATIVE_REMOVE:
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        return self._tombstone(ids)

    def _tombstone(self, ids: np.ndarray) -> int:
        fresh = np.setdiff1d(np.intersect1d(ids, self._all_ids()), self._removed)
        if fresh.size:
            self._removed = np.union1d(self._removed, fresh)
            self._removed_sel = None
        return int(fresh.size)

    def _all_ids(self) -> np.ndarray:
        """Every id in the FAISS structure (tombstoned ones included)."""
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def ids(self) -> np.ndarray:
        """The live ids, sorted."""
        return np.setdiff1d(self._all_ids(), self._removed)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` [n, dim] (normalised for cosine; decoded approximations for
        compressed kinds); unknown or removed ids are an error."""
        arr = id_array(ids)
        if arr.size == 0:
            return np.zeros((0, self.dim), np.float32)
        if self._removed.size and np.isin(arr, self._removed).any():
            raise VectorIndexError(f"some of the ids {arr[:5].tolist()} were removed from the index")
        try:
            return self._reconstruct_many(arr)
        except RuntimeError as e:
            raise VectorIndexError(f"the index holds no vector for some of the ids {arr[:5].tolist()}: {e}") from None

    def _reconstruct_many(self, arr: np.ndarray) -> np.ndarray:
        """The stored vectors of the (checked, live) ids ``arr``; a RuntimeError names an id the index lacks."""
        return np.stack([self._reconstruct_one(int(i)) for i in arr]).astype(np.float32)

    def _reconstruct_one(self, i: int) -> np.ndarray:
        return self._index.reconstruct(i)

    # ------------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None,
               fetch: Fetch | None = None, rerank: int | None = None, knob: int | None = None) -> SearchResult:
        """Top ``k`` per query.

        ``allowed_ids`` restricts the search to those ids (inside FAISS). ``rerank`` (default:
        the index's own) > 0 re-scores the top ``rerank * k`` candidates exactly with ``fetch``.
        ``knob``: the value of :attr:`KNOB` (``ef_search``, ``nprobe``) for this call only, e.g.
        widened for a filter (:mod:`audiosim.engine.search.planner`); default the index's own.
        """
        q = self.prepare(queries)
        k = int(k)
        if k < 1:
            raise VectorIndexError("k must be >= 1")
        r = self.rerank if rerank is None else int(rerank)
        if r < 0:
            raise VectorIndexError(f"rerank must be >= 0, got {r}")
        allowed = None if allowed_ids is None else id_array(allowed_ids)
        scores, ids = self.search_prepared(q, k, fetch=fetch, rerank=r, allowed=allowed, knob=knob)
        return SearchResult(scores=scores, ids=ids, metric=self.metric)

    def search_prepared(self, q: np.ndarray, k: int, *, fetch: Fetch | None = None, rerank: int | None = None,
                        allowed: np.ndarray | None = None, knob: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of queries already through :meth:`prepare` (float32, C-contiguous ``[n, dim]``, finite,
        unit length for cosine), without checking them again: ``(scores [n, k], ids [n, k])``.

        For callers that prepared the query themselves (the Searcher's single-vector path): ``k >= 1``,
        ``allowed`` an int64 id array (:func:`id_array`) or None, ``rerank`` and ``knob`` as in :meth:`search`.
        """
        r = self.rerank if rerank is None else rerank
        if r > 0 and fetch is None:
            raise VectorIndexError(f"this {self.KIND} index re-ranks its top {r} x k candidates exactly: pass "
                                   "fetch=(ids -> stored float vectors), or rerank=0 for approximate scores")
        kk = k * r if r > 0 else k
        if len(self) == 0 or not self.is_trained or (allowed is not None and allowed.size == 0):
            scores = np.zeros((q.shape[0], kk), np.float32)
            ids = np.full((q.shape[0], kk), -1, np.int64)
        elif r > 0:  # only the candidates' ids matter: their exact scores come next
            scores, ids = None, self._candidates(q, kk, allowed, knob)
        else:
            scores, ids = self._search_raw(q, kk, allowed, knob)
            if self.metric == "euclidean":
                scores = np.sqrt(np.maximum(scores, 0.0))
        if r > 0:
            scores, ids = self._rerank(q, ids, k, fetch)
        if ids[0, -1] < 0 if ids.shape[0] == 1 else (ids < 0).any():  # one query: missing neighbours come last
            missing = ids < 0
            scores = scores.copy()
            scores[missing] = -np.inf if self.metric == "cosine" else np.inf
        if scores.dtype != np.float32:
            scores = scores.astype(np.float32)
        if ids.dtype != np.int64:
            ids = ids.astype(np.int64)
        return scores, ids

    def _selector(self, allowed: np.ndarray | None):
        """(selector or None, objects to keep alive while FAISS uses it)."""
        import faiss

        parts = []
        if allowed is not None:
            parts.append(faiss.IDSelectorBatch(allowed))
        if self._removed.size:
            if self._removed_sel is None:
                batch = faiss.IDSelectorBatch(self._removed)
                self._removed_sel = (faiss.IDSelectorNot(batch), batch)
            parts.append(self._removed_sel[0])
        if not parts:
            return None, []
        if len(parts) == 1:
            return parts[0], parts
        both = faiss.IDSelectorAnd(parts[0], parts[1])
        return both, parts + [both]

    def _search_raw(self, q: np.ndarray, k: int, allowed: np.ndarray | None,
                    knob: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS scores (squared distances for euclidean) and ids of the top ``k``."""
        selector, keep = self._selector(allowed)
        if selector is None and self.device == "gpu":
            return self._searcher().search(q, k)
        if selector is None and knob is None and self.PLAIN_SEARCH:
            return self._index.search(q, k)  # the knob is set on the index itself: no parameter object per query
        scores, ids = self._index.search(q, k, params=self._search_params(selector, knob))
        del keep
        return scores, ids

    def _candidates(self, q: np.ndarray, k: int, allowed: np.ndarray | None, knob: int | None = None) -> np.ndarray:
        """The ids of :meth:`_search_raw`'s top ``k`` (a kind may skip computing scores nobody reads)."""
        return self._search_raw(q, k, allowed, knob)[1]

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int, fetch: Fetch) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the candidate ids (from ``fetch``), best ``k`` per query."""
        if q.shape[0] == 1:  # one query (the common case): its candidates are distinct, no de-duplication pass
            return self._rerank_one(q[0], cand[0], k, fetch)
        uniq = np.unique(cand[cand >= 0])
        out_s = np.full((q.shape[0], k), -np.inf if self.metric == "cosine" else np.inf, np.float32)
        out_i = np.full((q.shape[0], k), -1, np.int64)
        if uniq.size == 0:
            return out_s, out_i
        vecs = self._fetched(fetch, uniq)
        norms = exact.row_norms(vecs, self.metric) if self.metric == "cosine" else None
        for row in range(q.shape[0]):
            c = cand[row][cand[row] >= 0]
            if c.size == 0:
                continue
            pos = np.searchsorted(uniq, c)
            s = exact.scores(vecs[pos], q[row], self.metric, norms=None if norms is None else norms[pos])
            if not np.isfinite(s).all():
                raise VectorIndexError("fetch returned vectors with NaN or infinity; repair the stored vectors")
            s, best = exact.top_k(s, c, k, self.metric)
            out_s[row, :best.size] = s
            out_i[row, :best.size] = best
        return out_s, out_i

    def _rerank_one(self, q: np.ndarray, cand: np.ndarray, k: int, fetch: Fetch) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_rerank` of one query ``q`` [dim] and its candidate ids ``cand`` [c] (distinct; -1 for none)."""
        c = cand[cand >= 0] if cand[-1] < 0 else cand  # missing candidates (-1) come last
        if c.size:
            s = exact.scores(self._fetched(fetch, c), q, self.metric)
            if not np.isfinite(s).all():
                raise VectorIndexError("fetch returned vectors with NaN or infinity; repair the stored vectors")
            if c.size <= 512:  # a few candidates: one sort by score, ties by the smaller id (as exact.top_k ranks)
                order = np.lexsort((c, -s if self.metric == "cosine" else s))[:k]
                s, best = s[order], c[order]
            else:
                s, best = exact.top_k(s, c, k, self.metric)
            if best.size == k:
                return s.astype(np.float32, copy=False)[None, :], best[None, :]
        else:
            s, best = np.zeros(0, np.float32), np.zeros(0, np.int64)
        out_s = np.full((1, k), -np.inf if self.metric == "cosine" else np.inf, np.float32)
        out_i = np.full((1, k), -1, np.int64)
        out_s[0, :best.size] = s
        out_i[0, :best.size] = best
        return out_s, out_i

    def _fetched(self, fetch: Fetch, ids: np.ndarray) -> np.ndarray:
        """``fetch(ids)`` checked: float32 ``[len(ids), dim]``, C-contiguous."""
        vecs = fetch(ids)
        if not (type(vecs) is np.ndarray and vecs.dtype == np.float32 and vecs.flags.c_contiguous):
            vecs = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32))
        if vecs.ndim != 2 or vecs.shape != (ids.size, self.dim):
            raise VectorIndexError(f"fetch returned shape {vecs.shape} for {ids.size} ids; it must return "
                                   f"float32[{ids.size}, {self.dim}] in the order of the ids it was given")
        return vecs

    # ------------------------------------------------------------------ persistence
    def sidecar(self) -> dict:
        """What ``index.json`` records about this index (files are added by :meth:`save`)."""
        import faiss

        return {"format": FORMAT, "kind": self.KIND, "params": self.params(), "metric": self.metric, "dim": self.dim,
                "count": len(self), "removed": self.removed_count, "memory_bytes": int(self.memory_bytes()),
                "trained_for": self.trained_for, "build": self.build_info, "faiss_version": faiss.__version__}

    def save(self, directory: str | Path, *, extra: dict | None = None, ondisk: bool | None = None) -> dict:
        """Write the index files and then ``index.json`` (with every file's size and sha256) into ``directory``.

        ``ondisk=True`` writes IVF inverted lists to a memory-mapped ``.ivfdata`` file (IVF kinds
        only); ``None`` keeps the index where it is (on disk if it was loaded or built there).
        """

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.trained_for is None and self.is_trained and len(self):
            self.trained_for = len(self)
        files = self._write_files(d, ondisk=ondisk)
        removed = d / REMOVED_FILE
        if self._removed.size:
            files[REMOVED_FILE] = file_meta(_write_npy(removed, self._removed))
        sidecar = {**self.sidecar(), "files": files,
                   **({"file_sha256": files[INDEX_FILE]["sha256"], "file_bytes": files[INDEX_FILE]["bytes"]}
                      if INDEX_FILE in files else {}), **(extra or {})}
        write_json_atomic(d / SIDECAR, sidecar)
        if not self._removed.size:
            removed.unlink(missing_ok=True)
        return sidecar

    def _write_files(self, d: Path, *, ondisk: bool | None) -> dict:
        """Write the FAISS file(s) atomically; {file name: {bytes, sha256}}."""
        if ondisk:
            raise VectorIndexError(f"only IVF kinds keep inverted lists on disk, not {self.KIND}; save with ondisk=None")
        return {INDEX_FILE: file_meta(write_faiss_atomic(self._index, d / INDEX_FILE))}

    @classmethod
    def load(cls, directory: Path, sidecar: dict, *, device: str = "cpu") -> VectorIndex:
        """An index of this kind from a verified directory (see kinds.load_index)."""
        import faiss

        path = Path(directory) / INDEX_FILE
        try:
            raw = faiss.read_index(str(path), cls._io_flags(faiss))
        except RuntimeError as e:
            raise VectorIndexError(f"cannot read {path}: {e}; rebuild it with `audiosim index`") from None
        idx = cls.from_faiss(raw, sidecar, device=device)
        idx._load_removed(Path(directory), sidecar)
        return idx

    @classmethod
    def from_faiss(cls, raw, sidecar: dict, *, device: str = "cpu") -> VectorIndex:
        """An index of this kind around a FAISS index read from disk."""
        import faiss

        try:
            idx = cls(dim=int(sidecar["dim"]), metric=sidecar["metric"], device=device, **sidecar.get("params", {}))
        except TypeError as e:
            raise VectorIndexError(f"the sidecar's parameters do not fit the {cls.KIND} kind ({e}); rebuild the index") from None
        if raw.d != idx.dim:
            raise VectorIndexError(f"the sidecar says dim {idx.dim}, the FAISS file has {raw.d}")
        if idx.ID_MAP != isinstance(raw, (faiss.IndexIDMap2, faiss.IndexIDMap)):
            raise VectorIndexError(f"the FAISS file does not hold a {cls.KIND} index of this audiosim version "
                                   "(saved by an older one?); rebuild it with `audiosim index`")
        idx._index = raw
        idx.trained_for = sidecar.get("trained_for")
        idx.build_info = dict(sidecar.get("build") or {})
        idx._adopt()
        idx._configure()
        return idx

    def _adopt(self) -> None:
        """Hook run after ``_index`` was replaced by a loaded FAISS index."""

    def _load_removed(self, d: Path, sidecar: dict) -> None:
        if REMOVED_FILE in (sidecar.get("files") or {}):
            try:
                self._removed = np.sort(np.load(d / REMOVED_FILE).astype(np.int64))
            except (OSError, ValueError) as e:
                raise VectorIndexError(f"cannot read {d / REMOVED_FILE}: {e}; rebuild the index") from None
            self._removed_sel = None


# ---------------------------------------------------------------------- file helpers
def write_faiss_atomic(index, path: Path) -> Path:
    """``faiss.write_index`` written atomically (:func:`audiosim.files.atomic_path`: fsynced, renamed)."""
    import faiss

    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path


def _write_npy(path: Path, arr: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, arr)
    return write_bytes_atomic(path, buf.getvalue())


def file_meta(path: Path, *, sha256: bool = True) -> dict:
    meta = {"bytes": path.stat().st_size}
    if sha256:
        meta["sha256"] = sha256_file(path)
    return meta


def read_sidecar(directory: str | Path) -> dict:
    """The ``index.json`` of a saved index; a typed error when it is missing or not JSON."""
    p = Path(directory) / SIDECAR
    try:
        sidecar = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise VectorIndexError(f"cannot read {p}: {e}; rebuild the index with `audiosim index`") from None
    if not isinstance(sidecar, dict) or not {"kind", "dim", "metric"} <= set(sidecar):
        raise VectorIndexError(f"{p} is not an index sidecar; rebuild the index with `audiosim index`")
    wrong = _sidecar_type_problem(sidecar)
    if wrong:
        raise VectorIndexError(f"{p} is garbled ({wrong}); rebuild the index with `audiosim repair` "
                               "(or `audiosim index`)")
    return sidecar


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _file_table_problem(name: str, files) -> str | None:
    """Why a ``{file name: {"bytes": int, "sha256": str}}`` table of the sidecar is not one, or None."""
    if files is None:
        return None
    if not isinstance(files, dict):
        return f"{name!r} is a {type(files).__name__}, not an object"
    for fname, meta in files.items():
        if not fname or "/" in fname or "\\" in fname or fname in (".", ".."):
            return f"{name!r} names {fname!r}, not a file of the index folder"
        if not isinstance(meta, dict) or not _is_int(meta.get("bytes")) or meta["bytes"] < 0 or \
                not isinstance(meta.get("sha256", ""), str):
            return f"{name!r} entry {fname!r} is not {{bytes: int, sha256: str}}"
    return None


def _sidecar_type_problem(sidecar: dict) -> str | None:
    """Why a parsed ``index.json`` has a field of the wrong type, or None (a hand edit must not crash a reader)."""
    if not isinstance(sidecar["kind"], str) or not isinstance(sidecar["metric"], str):
        return "kind and metric are not strings"
    if not _is_int(sidecar["dim"]) or sidecar["dim"] < 1:
        return f"dim {sidecar['dim']!r} is not a positive integer"
    for key in ("count", "removed", "collection_revision", "trained_for"):
        v = sidecar.get(key)
        if v is not None and (not _is_int(v) or v < 0):
            return f"{key} {v!r} is not a non-negative integer"
    for key in ("build", "params"):
        if sidecar.get(key) is not None and not isinstance(sidecar[key], dict):
            return f"{key!r} is a {type(sidecar[key]).__name__}, not an object"
    return _file_table_problem("files", sidecar.get("files")) or \
        _file_table_problem("postprocess_files", sidecar.get("postprocess_files"))


def verify_files(directory: str | Path, sidecar: dict) -> None:
    """Check every file the sidecar lists: size always, sha256 where recorded (not for ``.ivfdata`` lists)."""

    d = Path(directory)
    files = sidecar.get("files")
    if files is None and "file_sha256" in sidecar:  # written before format 2
        files = {INDEX_FILE: {"bytes": sidecar.get("file_bytes"), "sha256": sidecar["file_sha256"]}}
    for name, meta in (files or {}).items():
        p = d / name
        if not p.is_file():
            raise VectorIndexError(f"{p} is missing; rebuild the index with `audiosim index` (or `audiosim repair`)")
        if p.stat().st_size != meta.get("bytes") or ("sha256" in meta and sha256_file(p) != meta["sha256"]):
            raise VectorIndexError(f"{p} does not match the size/sha256 in its sidecar (garbled or replaced); "
                                   "rebuild it with `audiosim index` or `audiosim repair`")

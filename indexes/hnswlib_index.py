"""HNSW through hnswlib (kind ``hnswlib``): the same graph as :mod:`audiosim.indexes.hnsw`, a faster single-query walk.

FAISS's HNSW answers one query at a time at 0.52-0.63x hnswlib's speed on the same graph
parameters and recall (issue 22); this kind keeps the :class:`~audiosim.indexes.base.VectorIndex`
interface (int64 ids, cosine/euclidean scores, ``allowed_ids``, ``remove``, ``reconstruct``,
``save``/``load`` with checksums, re-ranking) over an ``hnswlib.Index``:

* ids are hnswlib's labels (non-negative int64 ids, as the store hands out);
* cosine: vectors are normalised and searched in hnswlib's ``ip`` space (score = 1 - distance);
  euclidean: ``l2`` space (squared distances, square-rooted by the base class);
* ``m``, ``ef_construction`` as in the FAISS kind; ``ef_search`` is the tuned knob; a search with
  a per-call ``knob`` (the filtered-search planner widening it) sets ``ef`` under a lock and
  restores it;
* ``remove`` marks ids deleted (hnswlib keeps the marks in its file and never returns them); the
  removed ids are also kept as tombstones so :func:`audiosim.indexes.maintenance.needs_retrain`
  counts them;
* ``allowed_ids`` runs inside hnswlib's walk as a filter (``FILTER_INSIDE``): hnswlib keeps walking
  through rejected nodes until it holds ``ef`` allowed ones, so a filtered search keeps its recall
  without a wider ``ef`` (``FILTER_WIDENS = False``; at 20 % selectivity on 100k x 1024 audio-like
  vectors, recall@10 0.985 at ef 16, issue 22). The filter is a set's membership test, a C call
  per visited node; the set of a read-only ``allowed`` array (the planner's, kept per filter) is
  built once and kept for the last :data:`MEMBER_SETS` arrays;
* on disk: ``hnswlib.bin`` (written to a temporary name and renamed) listed with its size and
  sha256 in ``index.json`` like every index file.

hnswlib is an optional dependency (``pip install 'audiosim[hnswlib]'``); without it this kind is a
:class:`VectorIndexError` naming the install command.
"""

from __future__ import annotations

import math
import threading
import uuid
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import SIDECAR, VectorIndex, file_meta
from audiosim.indexes.hnsw import EF_SEARCH_VALUES
from audiosim.indexes.vectors import Metric

HNSWLIB_FILE = "hnswlib.bin"
MEMBER_SETS = 4  # membership sets kept for read-only allowed-id arrays (one per recent filter)
POST_MARGIN = 1.5  # a post-filtered walk wants this many times the allowed hits it needs (see _walk)
POST_MAX_CANDIDATES = 256  # the widest unfiltered walk a post-filter takes; a rarer filter walks through hnswlib's
INSTALL = "pip install 'audiosim[hnswlib]' (or pip install hnswlib), or use --index-kind hnsw"


def _hnswlib():
    try:
        import hnswlib
    except ImportError:
        raise VectorIndexError(f"the hnswlib index kind needs the hnswlib package: {INSTALL}") from None
    return hnswlib


class HnswlibIndex(VectorIndex):
    """HNSW over the float vectors, searched by hnswlib."""

    KIND = "hnswlib"
    GPU = False
    ID_MAP = False
    NATIVE_REMOVE = False
    KNOB = "ef_search"
    FILTER_INSIDE = True
    FILTER_WIDENS = False

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = 0, m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64) -> None:
        if device != "cpu":
            raise VectorIndexError("the hnswlib index kind runs on the CPU; use device='cpu'")
        self.metric = Metric.parse(metric)  # an UnknownMetricError is a VectorIndexError
        if int(dim) < 1 or int(rerank) < 0 or int(m) < 2 or int(ef_construction) < 1 or int(ef_search) < 1:
            raise VectorIndexError(f"bad hnswlib parameters (dim {dim}, rerank {rerank}, m {m}, "
                                   f"ef_construction {ef_construction}, ef_search {ef_search})")
        self.dim, self.device, self.rerank = int(dim), device, int(rerank)
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self.trained_for: int | None = None
        self.build_info: dict = {}
        self._gpu_index = None
        self._removed = np.zeros(0, np.int64)
        self._removed_sel = None
        self._knob_lock = threading.Lock()
        self._members: dict[int, tuple[np.ndarray, object]] = {}
        self._index = self._new_graph()
        self._index.init_index(max_elements=1024, M=self.m, ef_construction=self.ef_construction, random_seed=100)
        self._index.set_ef(self.ef_search)

    # ------------------------------------------------------------------ the graph's space (hooks for subclasses)
    def _new_graph(self):
        """An empty ``hnswlib.Index`` for the vectors the graph holds."""
        return _hnswlib().Index(space="ip" if self.metric == "cosine" else "l2", dim=self._graph_dim())

    def _graph_dim(self) -> int:
        return self.dim

    def _to_graph(self, x: np.ndarray) -> np.ndarray:
        """Prepared vectors as the graph stores them (here: as they are)."""
        return x

    def _graph_scores(self, dist: np.ndarray) -> np.ndarray:
        """hnswlib's distances as this index's raw scores (cosine: similarity; euclidean: squared distance)."""
        return (1.0 - dist) if self.metric == "cosine" else dist

    # ------------------------------------------------------------------ state
    def _ntotal(self) -> int:
        return int(self._index.get_current_count())

    @property
    def is_trained(self) -> bool:
        return True

    def _configure(self) -> None:
        self._index.set_ef(self.ef_search)

    def params(self) -> dict:
        return {"rerank": self.rerank, "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def estimate_bytes(self, n: int, *, ondisk: bool = False) -> int:
        # level 0: 2m links + count, upper levels ~1/m of that, the label, the vector; the label lookup table
        return int(n) * (self.code_bytes() + int((2 * self.m + 1) * 4 * (1 + 1 / self.m)) + 8 + 40)

    def knob_values(self, k: int) -> list[int]:
        return sorted({max(k, v) for v in EF_SEARCH_VALUES})

    # ------------------------------------------------------------------ building
    def _train(self, x: np.ndarray) -> None:
        return None

    def _add(self, ids: np.ndarray, x: np.ndarray) -> None:
        if (ids < 0).any():
            raise VectorIndexError("the hnswlib index kind stores non-negative ids only")
        need = self._ntotal() + ids.size
        if need > self._index.get_max_elements():
            self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
        self._index.add_items(self._to_graph(x), ids.astype(np.uint64))

    def _remove(self, ids: np.ndarray) -> int:
        fresh = np.setdiff1d(np.intersect1d(ids, self._all_ids()), self._removed)
        for i in fresh.tolist():
            self._index.mark_deleted(int(i))
        if fresh.size:
            self._removed = np.union1d(self._removed, fresh)
        return int(fresh.size)

    def _all_ids(self) -> np.ndarray:
        return np.sort(np.asarray(self._index.get_ids_list(), dtype=np.int64))

    def _reconstruct_many(self, arr: np.ndarray) -> np.ndarray:
        return self._from_graph(np.asarray(self._index.get_items(arr.astype(np.uint64), return_type="numpy"),
                                           dtype=np.float32))

    def _from_graph(self, y: np.ndarray) -> np.ndarray:
        """Vectors as the graph holds them, mapped back to this index's space (here: as they are)."""
        return y

    # ------------------------------------------------------------------ searching
    def search_prepared(self, q: np.ndarray, k: int, *, fetch=None, rerank: int | None = None,
                        allowed: np.ndarray | None = None, knob: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The base class's :meth:`~audiosim.indexes.base.VectorIndex.search_prepared`; one query at this index's own
        ``ef`` takes a short path (one graph walk, then the exact re-rank of its candidates), and everything
        else -- a batch, a per-call knob, fewer vectors than asked, no ``fetch`` for a re-rank -- the general one."""
        r = self.rerank if rerank is None else rerank
        kk = k * r if r > 0 else k
        if q.shape[0] != 1 or (knob is not None and knob != self.ef_search) or (r > 0 and fetch is None) or (
                kk > self._index.element_count - self._removed.size) or (allowed is not None and allowed.size < kk):
            return super().search_prepared(q, k, fetch=fetch, rerank=rerank, allowed=allowed, knob=knob)
        try:
            if allowed is None:
                labels, dist = self._index.knn_query(self._to_graph(q), k=kk, num_threads=1)
            else:
                labels, dist = self._walk(self._to_graph(q), kk, allowed, need=k, pad=False)
        except RuntimeError:  # fewer than kk reachable (a sparse filter): the general path pads
            return super().search_prepared(q, k, fetch=fetch, rerank=rerank, allowed=allowed, knob=knob)
        ids = labels.view(np.int64)
        if r > 0:
            return self._rerank_one(q[0], ids[0], k, fetch)
        scores = self._graph_scores(dist)
        if self.metric == "euclidean":
            scores = np.sqrt(np.maximum(scores, 0.0))
        return scores.astype(np.float32, copy=False), ids

    def _candidates(self, q: np.ndarray, k: int, allowed: np.ndarray | None, knob: int | None = None) -> np.ndarray:
        return self._search_raw(q, k, allowed, knob, want_scores=False)[1]

    def _search_raw(self, q: np.ndarray, k: int, allowed: np.ndarray | None, knob: int | None = None, *,
                    want_scores: bool = True):
        kk = max(0, min(int(k), len(self), allowed.size if allowed is not None else int(k)))
        if kk == 0:
            return (np.full((q.shape[0], k), -np.inf if self.metric == "cosine" else np.inf, np.float32),
                    np.full((q.shape[0], k), -1, np.int64))
        ef = max(int(knob or self.ef_search), kk)
        g = self._to_graph(q)
        if ef != max(self.ef_search, kk):  # hnswlib searches with max(its ef, k) by itself
            with self._knob_lock:
                self._index.set_ef(ef)
                try:
                    labels, dist = self._walk(g, kk, allowed, need=kk)
                finally:
                    self._index.set_ef(self.ef_search)
        else:
            labels, dist = self._walk(g, kk, allowed, need=kk)
        if labels.shape[1] == k:  # all asked for (the common case): no padding
            return (self._graph_scores(dist) if want_scores else None), (
                labels.view(np.int64) if labels.dtype == np.uint64 else labels)
        scores = np.full((q.shape[0], k), -np.inf if self.metric == "cosine" else np.inf, np.float32)
        ids = np.full((q.shape[0], k), -1, np.int64)
        ids[:, :labels.shape[1]] = labels
        scores[:, :labels.shape[1]] = self._graph_scores(dist)
        return scores, ids

    def _walk(self, g: np.ndarray, kk: int, allowed: np.ndarray | None, *, need: int, pad: bool = True):
        """hnswlib's ``kk`` nearest of the graph-space queries ``g`` among the ``allowed`` ids (None: all):
        ``(labels, distances)``, nearest first (``pad``: -1 labels where fewer are reachable; otherwise fewer
        reachable is hnswlib's RuntimeError).

        A filter that allows a good share of the graph is a post-filter (one query): the graph is walked
        without it for ``c = max(kk, ef, POST_MARGIN x need) / s + kk`` candidates (``s``: the allowed
        share; about as many allowed ones as the filtered walk would hold, and a margin), and the allowed ones
        are kept when at least ``need`` of them are: a walk in C, with no Python call per visited node
        (docs/search-speed.md, run 5: the 20 % label filter). Otherwise, or when fewer come back,
        hnswlib's filtered walk: it calls the membership test for every node it visits and walks on through
        rejected ones until it holds ``ef`` allowed ones.
        """
        query = self._query if pad else self._knn
        if allowed is None:
            return query(g, kk, None)
        members = self._membership(allowed)
        if members and g.shape[0] == 1:
            live = self._index.element_count - self._removed.size
            c = int(math.ceil(max(kk, self._index.ef, POST_MARGIN * need) * live / len(members))) + kk
            if c <= min(POST_MAX_CANDIDATES, live):
                labels, dist = query(g, c, None)
                keep = [j for j, i in enumerate(labels[0].tolist()) if i in members]  # a few dozen: no numpy calls
                if len(keep) >= need:
                    keep = keep[:kk]
                    return labels[:, keep], dist[:, keep]
        return query(g, kk, members.__contains__)

    def _membership(self, allowed: np.ndarray) -> set:
        """The set of the ``allowed`` ids (hnswlib's filter is its membership test), kept for a read-only array:
        the same object passed again, as the planner does for a repeated filter, reuses it."""
        if allowed.flags.writeable:  # the caller may change it in place: no reuse
            return set(allowed.tolist())
        kept = self._members.get(id(allowed))
        if kept is not None and kept[0] is allowed:  # the array is held here, so its id is not reused meanwhile
            return kept[1]
        found = set(allowed.tolist())
        members = dict(self._members)  # copy, change, swap: searching threads read the old dict meanwhile
        while len(members) >= MEMBER_SETS:
            members.pop(next(iter(members)))
        members[id(allowed)] = (allowed, found)
        self._members = members
        return found

    def _knn(self, q: np.ndarray, k: int, filt):
        return self._index.knn_query(q, k=k, num_threads=1 if q.shape[0] == 1 else -1, filter=filt)

    def _query(self, q: np.ndarray, k: int, filt):
        try:
            return self._knn(q, k, filt)
        except RuntimeError as e:  # fewer than k reachable (tiny or heavily filtered graphs): ask for fewer
            if k <= 1:
                raise VectorIndexError(f"hnswlib found no neighbour ({e})") from None
            labels, dist = self._query(q, k // 2, filt)
            pad = k - labels.shape[1]
            return (np.pad(labels.astype(np.int64), ((0, 0), (0, pad)), constant_values=-1),
                    np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf if self.metric != "cosine" else 2.0))

    # ------------------------------------------------------------------ persistence
    def _write_files(self, d: Path, *, ondisk: bool | None) -> dict:
        if ondisk:
            raise VectorIndexError("only IVF kinds keep inverted lists on disk, not hnswlib; save with ondisk=None")
        final = d / HNSWLIB_FILE
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            self._index.save_index(str(tmp))
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return {HNSWLIB_FILE: file_meta(final), **self._write_extra(d)}

    def _write_extra(self, d: Path) -> dict:
        """Files a subclass saves beside the graph: {name: {bytes, sha256}}."""
        return {}

    def _load_extra(self, d: Path, sidecar: dict) -> None:
        """Read what :meth:`_write_extra` saved (the files are verified against the sidecar before)."""

    @classmethod
    def load(cls, directory: Path, sidecar: dict, *, device: str = "cpu") -> "HnswlibIndex":
        try:
            idx = cls(dim=int(sidecar["dim"]), metric=sidecar["metric"], device=device, **sidecar.get("params", {}))
        except TypeError as e:
            raise VectorIndexError(f"the sidecar's parameters do not fit the hnswlib kind ({e}); rebuild the index") from None
        path = Path(directory) / HNSWLIB_FILE
        total = int(sidecar.get("count", 0)) + int(sidecar.get("removed", 0))
        idx._load_extra(Path(directory), sidecar)
        idx._index = idx._new_graph()
        try:
            idx._index.load_index(str(path), max_elements=max(total, 1))
        except (RuntimeError, OSError) as e:
            raise VectorIndexError(f"cannot read {path}: {e}; rebuild it with `audiosim index` "
                                   f"(see {Path(directory) / SIDECAR})") from None
        if idx._index.dim != idx._graph_dim():
            raise VectorIndexError(f"the sidecar says dim {idx._graph_dim()}, {path} holds {idx._index.dim}")
        idx._index.set_ef(idx.ef_search)
        idx.trained_for = sidecar.get("trained_for")
        idx.build_info = dict(sidecar.get("build") or {})
        idx._load_removed(Path(directory), sidecar)
        return idx

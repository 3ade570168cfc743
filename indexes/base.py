"""The vector index interface shared by every FAISS index kind: ids in, scored ids out.

* ``cosine``: vectors are L2-normalised and searched by inner product; scores are cosine
  similarities (higher is closer).
* ``euclidean``: scores are Euclidean distances (lower is closer).

Ids are the caller's int64 ids (FAISS ``IndexIDMap2``). A search may be restricted to a set
of allowed ids; the restriction runs inside FAISS (an ``IDSelector`` in the search
parameters), so ``k`` hits come back whenever at least ``k`` allowed vectors exist (exact
kinds) rather than a post-filter of the top ``k``. An index is saved as ``faiss.index`` plus
an ``index.json`` sidecar recording kind, parameters, metric, dim, count and the file's
sha256; :func:`audiosim.indexes.kinds.load_index` reads any kind back.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.vectors import canonical_metric, l2_normalize

INDEX_FILE = "faiss.index"
SIDECAR = "index.json"


@dataclass(frozen=True)
class SearchResult:
    """``scores[q, r]`` and ``ids[q, r]`` for query q and rank r; missing neighbours have id -1."""

    scores: np.ndarray
    ids: np.ndarray
    metric: str

    @property
    def higher_is_closer(self) -> bool:
        return self.metric == "cosine"


class VectorIndex:
    """Base class of the FAISS index kinds (flat, hnsw, ivf, ...).

    Subclasses say how the FAISS index under the id map is made (:meth:`_make_base`), trained
    (:meth:`_train`), configured after loading (:meth:`_configure`), and which search
    parameters carry an id selector (:meth:`_search_params`).

    ``device="gpu"`` searches on all GPUs FAISS can see (needs a GPU build of FAISS); the
    default ``"cpu"`` never touches one. Saved files always hold the CPU index.
    """

    KIND = "base"
    GPU = True  # whether FAISS can search this kind on a GPU

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu") -> None:
        import faiss

        if device not in ("cpu", "gpu"):
            raise VectorIndexError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and not self.GPU:
            raise VectorIndexError(f"FAISS has no GPU {self.KIND.upper()} search; use device='cpu', or the flat or ivf kind on a GPU")
        try:
            self.metric = canonical_metric(metric)
        except Exception as e:
            raise VectorIndexError(str(e)) from None
        self.dim = int(dim)
        self.device = device
        self._gpu_index = None
        self._index = faiss.IndexIDMap2(self._make_base(faiss))

    # ------------------------------------------------------------------ for subclasses
    def _faiss_metric(self, faiss):
        return faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2

    def _make_base(self, faiss):  # pragma: no cover - abstract
        raise NotImplementedError

    def _train(self, x: np.ndarray) -> None:
        """Kinds with a trained structure learn it from the first vectors added."""

    def _configure(self) -> None:
        """Apply search-time parameters to a freshly loaded FAISS index."""

    def _search_params(self, selector):
        """FAISS search parameters carrying ``selector`` (and the kind's own search settings)."""
        import faiss

        return faiss.SearchParameters(sel=selector)

    def params(self) -> dict:
        """Construction parameters recorded in the sidecar."""
        return {}

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _searcher(self):
        if self.device == "cpu":
            return self._index
        if self._gpu_index is None:
            import faiss

            if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() < 1:
                raise VectorIndexError(
                    "device='gpu' but this FAISS build sees no GPU; install faiss-gpu on a CUDA machine or use device='cpu'"
                )
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_index

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Vectors as FAISS stores them: float32, C-contiguous, unit length for cosine."""
        x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
        if x.shape[1] != self.dim:
            raise VectorIndexError(f"vectors have dim {x.shape[1]}, the index has {self.dim}")
        return np.ascontiguousarray(l2_normalize(x)) if self.metric == "cosine" else x

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        x = self.prepare(vectors)
        if ids.shape[0] != x.shape[0]:
            raise VectorIndexError(f"{ids.shape[0]} ids for {x.shape[0]} vectors")
        if not self._index.is_trained:
            self._train(x)
        self._index.add_with_ids(x, ids)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Drop vectors by id; returns how many were removed."""
        import faiss

        arr = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        if arr.size == 0:
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(arr)))
        self._gpu_index = None
        return removed

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored (normalised, for cosine) vectors of ``ids`` [n, dim]; unknown ids are an error."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        try:
            return np.stack([self._index.reconstruct(int(i)) for i in arr]) if arr.size else np.zeros((0, self.dim), np.float32)
        except RuntimeError as e:
            raise VectorIndexError(f"the index holds no vector for some of the ids {arr[:5].tolist()}: {e}") from None

    def search(self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None) -> SearchResult:
        """Top ``k`` per query; ``allowed_ids`` restricts the search to those ids (inside FAISS)."""
        q = self.prepare(queries)
        k = int(k)
        if k < 1:
            raise VectorIndexError("k must be >= 1")
        if allowed_ids is None:
            scores, ids = self._searcher().search(q, k)
        else:
            import faiss

            allowed = np.ascontiguousarray(np.asarray(allowed_ids, dtype=np.int64))
            if allowed.size == 0:
                scores = np.zeros((q.shape[0], k), np.float32)
                ids = np.full((q.shape[0], k), -1, np.int64)
            else:
                selector = faiss.IDSelectorBatch(allowed)
                scores, ids = self._index.search(q, k, params=self._search_params(selector))
        if self.metric == "euclidean":
            scores = np.sqrt(np.maximum(scores, 0.0))
        missing = ids < 0
        if missing.any():
            scores = scores.copy()
            scores[missing] = -np.inf if self.metric == "cosine" else np.inf
        return SearchResult(scores=scores.astype(np.float32), ids=ids.astype(np.int64), metric=self.metric)

    # ------------------------------------------------------------------ persistence
    def sidecar(self) -> dict:
        import faiss

        return {"kind": self.KIND, "params": self.params(), "metric": self.metric, "dim": self.dim,
                "count": len(self), "faiss_version": faiss.__version__}

    def save(self, directory: str | Path, *, extra: dict | None = None) -> dict:
        """Write ``faiss.index`` and ``index.json`` (with the index file's sha256) atomically into ``directory``."""
        import faiss

        from audiosim.files import sha256_file, write_json_atomic

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{INDEX_FILE}.{uuid.uuid4().hex}.tmp"
        faiss.write_index(self._index, str(tmp))
        digest, size = sha256_file(tmp), tmp.stat().st_size
        os.replace(tmp, d / INDEX_FILE)
        sidecar = {**self.sidecar(), "file_sha256": digest, "file_bytes": size, **(extra or {})}
        write_json_atomic(d / SIDECAR, sidecar)
        return sidecar

    @classmethod
    def from_faiss(cls, raw, sidecar: dict, *, device: str = "cpu") -> "VectorIndex":
        """An index of this kind around a FAISS index read from disk."""
        idx = cls(dim=int(sidecar["dim"]), metric=sidecar["metric"], device=device, **sidecar.get("params", {}))
        if raw.d != idx.dim:
            raise VectorIndexError(f"the sidecar says dim {idx.dim}, the FAISS file has {raw.d}")
        idx._index = raw
        idx._configure()
        return idx


def read_sidecar(directory: str | Path) -> dict:
    """The ``index.json`` of a saved index; a typed error when it is missing or not JSON."""
    p = Path(directory) / SIDECAR
    try:
        sidecar = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise VectorIndexError(f"cannot read {p}: {e}; rebuild the index with `audiosim index`") from None
    if not isinstance(sidecar, dict) or not {"kind", "dim", "metric"} <= set(sidecar):
        raise VectorIndexError(f"{p} is not an index sidecar; rebuild the index with `audiosim index`")
    return sidecar

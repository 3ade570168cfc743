"""Graph indexes (FAISS HNSW): over full vectors (``hnsw``) or over 8-bit scalar codes (``hnswsq``).

``m`` links per node (memory ``~ 2 * m * 4`` bytes per vector on the base layer);
``ef_construction`` sets build quality; ``ef_search`` (the tuned knob) trades speed for recall.
FAISS cannot remove from an HNSW graph: removed ids become tombstones that every search
excludes inside FAISS (a selector), and the retrain policy asks for a rebuild once they are
many (:func:`audiosim.indexes.maintenance.needs_retrain`). CPU only.
"""

from __future__ import annotations

from audiosim.indexes.base import VectorIndex

EF_SEARCH_VALUES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


class HnswIndex(VectorIndex):
    """HNSW over the float vectors (exact scores of what it finds)."""

    KIND = "hnsw"
    GPU = False
    NATIVE_REMOVE = False
    KNOB = "ef_search"
    FILTER_INSIDE = False  # FAISS's filtered HNSW walk loses recall as efSearch grows: post-filter instead

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = 0, m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64) -> None:
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        super().__init__(dim=dim, metric=metric, device=device, rerank=rerank)

    def _make_base(self, faiss):
        base = faiss.IndexHNSWFlat(self.dim, self.m, self._faiss_metric(faiss))
        return self._setup(base)

    def _setup(self, base):
        base.hnsw.efConstruction = self.ef_construction
        base.hnsw.efSearch = self.ef_search
        return base

    def _configure(self) -> None:
        import faiss

        faiss.downcast_index(self._index.index).hnsw.efSearch = self.ef_search

    def _search_params(self, selector, knob: int | None = None):
        import faiss

        return faiss.SearchParametersHNSW(sel=selector, efSearch=int(knob or self.ef_search))

    def params(self) -> dict:
        return {**super().params(), "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def estimate_bytes(self, n: int, *, ondisk: bool = False) -> int:
        # base layer: 2m neighbour ints; upper layers add ~1/m of that; levels, offsets and the id maps
        return int(n) * (self.code_bytes() + int(2 * self.m * 4 * (1 + 1 / self.m)) + 16 + 48)

    def knob_values(self, k: int) -> list[int]:
        return sorted({max(k, v) for v in EF_SEARCH_VALUES})


class HnswSqIndex(HnswIndex):
    """HNSW over 8-bit scalar-quantised codes (``dim`` bytes per vector, a quarter of the floats);
    trained (the per-dimension ranges) on the first vectors or a sample."""

    KIND = "hnswsq"
    TRAINED = True

    def _make_base(self, faiss):
        base = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, self.m, self._faiss_metric(faiss))
        return self._setup(base)

    def code_bytes(self) -> int:
        return self.dim

"""Graph index (FAISS HNSW over full vectors): fast approximate search for large collections."""

from __future__ import annotations

from audiosim.indexes.base import VectorIndex


class HnswIndex(VectorIndex):
    """HNSW: ``m`` links per node; ``ef_search`` trades speed for recall. CPU only."""

    KIND = "hnsw"
    GPU = False

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64) -> None:
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        super().__init__(dim=dim, metric=metric, device=device)

    def _make_base(self, faiss):
        base = faiss.IndexHNSWFlat(self.dim, self.m, self._faiss_metric(faiss))
        base.hnsw.efConstruction = self.ef_construction
        base.hnsw.efSearch = self.ef_search
        return base

    def _configure(self) -> None:
        import faiss

        faiss.downcast_index(self._index.index).hnsw.efSearch = self.ef_search

    def _search_params(self, selector):
        import faiss

        return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)

    def params(self) -> dict:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

"""Inverted-file index (FAISS IVF-Flat): k-means cells, a few visited per query."""

from __future__ import annotations

import numpy as np

from audiosim.indexes.base import VectorIndex


class IvfIndex(VectorIndex):
    """Inverted lists over k-means cells (IVF-Flat), trained on the first vectors added.

    ``nlist`` cells (default: about 4 * sqrt(n), at most n / 39 so every cell gets enough
    training points); ``nprobe`` cells visited per query.
    """

    KIND = "ivf"

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", nlist: int | None = None,
                 nprobe: int = 8, seed: int = 0) -> None:
        self.nlist, self.nprobe, self.seed = nlist, int(nprobe), int(seed)
        super().__init__(dim=dim, metric=metric, device=device)

    def _make_base(self, faiss):
        # the real IVF is built in _train, when the number of training vectors is known
        return faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, max(1, self.nlist or 1), self._faiss_metric(faiss))

    def _train(self, x: np.ndarray) -> None:
        import faiss

        n = x.shape[0]
        nlist = self.nlist or int(min(max(1, round(4 * np.sqrt(n))), max(1, n // 39)))
        quantizer = faiss.IndexFlatIP(self.dim) if self.metric == "cosine" else faiss.IndexFlatL2(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric(faiss))
        ivf.cp.seed = self.seed
        ivf.train(x)
        ivf.nprobe = min(self.nprobe, nlist)
        self._quantizer = quantizer  # the IVF index does not own it
        self._index = faiss.IndexIDMap2(ivf)
        self.nlist = nlist

    def _configure(self) -> None:
        import faiss

        faiss.extract_index_ivf(self._index).nprobe = min(self.nprobe, self.nlist or self.nprobe)

    def _search_params(self, selector):
        import faiss

        return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.nprobe, self.nlist or self.nprobe))

    def params(self) -> dict:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "seed": self.seed}

"""Scalar-quantised exhaustive search (FAISS ``IndexScalarQuantizer``, 8 bits per dimension).

Every query is compared with every vector's 8-bit code (``dim`` bytes per vector, a quarter of
the float32 vectors); the per-dimension ranges are trained on the first vectors or a sample.
Scores are approximate; exact re-ranking (``rerank``, ``fetch``) restores exact ones.
"""

from __future__ import annotations

from audiosim.indexes.base import VectorIndex


class Sq8Index(VectorIndex):
    """8-bit scalar codes scanned exhaustively (no search-time knob)."""

    KIND = "sq8"
    GPU = False
    TRAINED = True

    def _make_base(self, faiss):
        return faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, self._faiss_metric(faiss))

    def code_bytes(self) -> int:
        return self.dim

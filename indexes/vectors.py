"""Vector helpers shared by indexes, anomaly scorers, post-processing and metrics: one vocabulary, one normaliser.

Distances are named ``cosine`` (cosine similarity; higher is closer) and ``euclidean``
(Euclidean distance; lower is closer) everywhere in audiosim. ``l2`` is accepted on input as
an alias of ``euclidean`` (collections made before the names were unified record ``l2``).
"""

from __future__ import annotations

import numpy as np

from audiosim.errors import AudiosimError

METRICS = ("cosine", "euclidean")
ALIASES = {"l2": "euclidean"}


def canonical_metric(name: str) -> str:
    """``cosine`` or ``euclidean`` for any accepted spelling; a clear error otherwise."""
    m = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if m not in METRICS:
        raise AudiosimError(f"unknown distance {name!r}; use one of {', '.join(METRICS)} ('l2' means euclidean)")
    return m


def l2_normalize(x: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """Row-wise unit vectors of ``x`` ([n, d], or [d] treated as one row); zero rows stay zero."""
    a = np.atleast_2d(np.asarray(x, dtype=dtype))
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.maximum(norms, 1e-12)).astype(dtype, copy=False)

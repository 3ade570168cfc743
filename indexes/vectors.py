"""Vector helpers shared by indexes, anomaly scorers, post-processing and metrics: one vocabulary, one normaliser.

Distances are named ``cosine`` (cosine similarity; higher is closer) and ``euclidean``
(Euclidean distance; lower is closer) everywhere in audiosim. ``l2`` is accepted on input as
an alias of ``euclidean`` (collections made before the names were unified record ``l2``).
"""

from __future__ import annotations

import numpy as np

from enum import Enum

from audiosim.errors import UnknownMetricError


class Metric(str, Enum):
    """How vectors are compared: ``cosine`` (similarity; higher is closer) or ``euclidean`` (distance; lower is closer).

    A ``str`` (``Metric.COSINE == "cosine"``, formats and serialises as its name), made from any
    accepted spelling once, where a value enters (CLI, service, API), by :meth:`parse`.
    """

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"

    @classmethod
    def parse(cls, name: "str | Metric") -> "Metric":
        """The metric for any accepted spelling (``l2`` means euclidean); an :class:`UnknownMetricError` otherwise."""
        if isinstance(name, cls):
            return name
        key = str(name).strip().lower()
        try:
            return cls(ALIASES.get(key, key))
        except ValueError:
            raise UnknownMetricError(f"unknown distance {name!r}; use one of {', '.join(METRICS)} "
                                     "('l2' means euclidean)") from None

    @property
    def higher_is_closer(self) -> bool:
        """True for cosine (a similarity), False for euclidean (a distance)."""
        return self is Metric.COSINE

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


METRICS = tuple(m.value for m in Metric)
ALIASES = {"l2": "euclidean"}
canonical_metric = Metric.parse  # the earlier name


def l2_normalize(x: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """Row-wise unit vectors of ``x`` ([n, d], or [d] treated as one row); zero rows stay zero."""
    a = np.atleast_2d(np.asarray(x, dtype=dtype))
    norms = np.sqrt(np.add.reduce(a * a, axis=1, keepdims=True))  # what np.linalg.norm computes, without its checks
    return (a / np.maximum(norms, 1e-12)).astype(dtype, copy=False)

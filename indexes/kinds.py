"""The index kinds by name: make an empty one, or load a saved one of any kind.

Entries are import paths, so naming a kind imports only the module that implements it.
``auto`` is not a kind of its own: :func:`audiosim.indexes.auto.choose_and_build` picks one of
these from the data, a memory budget and a target recall (:data:`AUTO`).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import MappingProxyType

from audiosim.errors import VectorIndexError
from audiosim.values import finite_number
from audiosim.indexes.base import VectorIndex, read_sidecar, verify_files

AUTO = "auto"

KINDS = MappingProxyType({
    "flat": ("audiosim.indexes.flat", "FlatIndex", "exact search (the default)"),
    "hnsw": ("audiosim.indexes.hnsw", "HnswIndex", "HNSW graph over full vectors (approximate)"),
    "ivf": ("audiosim.indexes.ivf", "IvfIndex", "IVF-Flat: k-means cells, nprobe visited (approximate)"),
    "sq8": ("audiosim.indexes.sq", "Sq8Index", "exhaustive scan of 8-bit scalar codes (1/4 of the floats)"),
    "hnswlib": ("audiosim.indexes.hnswlib_index", "HnswlibIndex", "HNSW graph searched by hnswlib (faster single queries; extra)"),
    "hnswsq": ("audiosim.indexes.hnsw", "HnswSqIndex", "HNSW graph over 8-bit scalar codes"),
    "hnswpca": ("audiosim.indexes.hnswpca", "HnswPcaIndex",
                "HNSW graph (hnswlib) over PCA-reduced vectors, candidates re-ranked exactly (fastest single queries; extra)"),
    "ivfsq8": ("audiosim.indexes.ivf", "IvfSq8Index", "IVF over 8-bit scalar codes"),
    "ivfpq": ("audiosim.indexes.ivf", "IvfPqIndex", "IVF-PQ (optionally OPQ-rotated) product-quantiser codes"),
})


def kind_names(*, auto: bool = True) -> tuple[str, ...]:
    """Every kind name (for CLI choices), with ``auto`` last when asked."""
    return tuple(KINDS) + ((AUTO,) if auto else ())


def index_class(kind: str) -> type[VectorIndex]:
    if kind == AUTO:
        raise VectorIndexError("the auto kind is chosen from the data: build it with "
                               "audiosim.indexes.auto.choose_and_build (or pass a concrete kind)")
    try:
        module, name, _ = KINDS[kind]
    except KeyError:
        raise VectorIndexError(f"unknown index kind {kind!r}; choose one of {', '.join(kind_names())}") from None
    return getattr(importlib.import_module(module), name)


def check_kind(kind: str, params: dict | None = None) -> None:
    """Refuse an unknown kind, or parameters its class does not take, without building an index.

    ``auto`` takes what :func:`audiosim.indexes.auto.choose_and_build` takes (``memory_budget``,
    ``target_recall``).
    """
    if kind == AUTO:
        unknown = sorted(set(params or {}) - {"memory_budget", "target_recall"})
        if unknown:
            raise VectorIndexError(f"the auto index kind takes memory_budget and target_recall, not {', '.join(unknown)}")
        auto_target_recall(params or {})
        return
    cls = index_class(kind)
    try:
        inspect.signature(cls.__init__).bind(None, dim=8, **(params or {}))
    except TypeError as e:
        raise VectorIndexError(f"bad parameters for the {kind} index: {e}") from None


def auto_target_recall(params: dict, default: float = 0.95) -> float:
    """The auto kind's ``target_recall``: a number in (0, 1]; absent or None (as an older version stored nan) is
    ``default``; nan, infinity or anything else is an :class:`~audiosim.errors.InvalidOptionError`."""
    value = params.get("target_recall")
    if value is None:
        return default
    return finite_number(value, option="target_recall", min=0, max=1, min_open=True)


def make_index(kind: str = "flat", *, dim: int, metric: str = "cosine", device: str = "cpu", **params) -> VectorIndex:
    """An empty index of ``kind`` (see :data:`KINDS`); unknown parameters are a typed error."""
    cls = index_class(kind)
    try:
        return cls(dim=dim, metric=metric, device=device, **params)
    except TypeError as e:
        raise VectorIndexError(f"bad parameters for the {kind} index: {e}") from None


def load_index(directory: str | Path, *, device: str = "cpu", verify: bool = True) -> tuple[VectorIndex, dict]:
    """Read a saved index of any kind and its sidecar.

    ``verify`` checks every file's size, and its sha256 where the sidecar records one (all but
    ``.ivfdata`` lists), so a garbled file is a :class:`VectorIndexError` instead of nonsense scores.
    """
    d = Path(directory)
    sidecar = read_sidecar(d)
    if verify:
        verify_files(d, sidecar)
    return index_class(sidecar["kind"]).load(d, sidecar, device=device), sidecar

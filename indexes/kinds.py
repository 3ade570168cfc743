"""The index kinds by name: make an empty one, or load a saved one of any kind.

Entries are import paths, so naming a kind imports only the module that implements it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import MappingProxyType

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import INDEX_FILE, VectorIndex, read_sidecar

KINDS = MappingProxyType({
    "flat": ("audiosim.indexes.flat", "FlatIndex", "exact search (the default)"),
    "hnsw": ("audiosim.indexes.hnsw", "HnswIndex", "HNSW graph over full vectors (approximate)"),
    "ivf": ("audiosim.indexes.ivf", "IvfIndex", "IVF-Flat: k-means cells, nprobe visited (approximate)"),
})


def index_class(kind: str) -> type[VectorIndex]:
    try:
        module, name, _ = KINDS[kind]
    except KeyError:
        raise VectorIndexError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}") from None
    return getattr(importlib.import_module(module), name)


def make_index(kind: str = "flat", *, dim: int, metric: str = "cosine", device: str = "cpu", **params) -> VectorIndex:
    """An empty index of ``kind`` (see :data:`KINDS`)."""
    return index_class(kind)(dim=dim, metric=metric, device=device, **params)


def load_index(directory: str | Path, *, device: str = "cpu", verify: bool = True) -> tuple[VectorIndex, dict]:
    """Read a saved index of any kind and its sidecar.

    ``verify`` checks the FAISS file's size and sha256 against the sidecar, so a garbled file
    is a :class:`VectorIndexError` instead of nonsense scores.
    """
    import faiss

    from audiosim.files import sha256_file

    d = Path(directory)
    sidecar = read_sidecar(d)
    path = d / INDEX_FILE
    if not path.is_file():
        raise VectorIndexError(f"{path} is missing; rebuild the index with `audiosim index` (or `audiosim repair`)")
    if verify and "file_sha256" in sidecar:
        if path.stat().st_size != sidecar.get("file_bytes") or sha256_file(path) != sidecar["file_sha256"]:
            raise VectorIndexError(f"{path} does not match the sha256 in its sidecar (garbled or replaced); "
                                   "rebuild it with `audiosim index` or `audiosim repair`")
    try:
        raw = faiss.read_index(str(path))
    except RuntimeError as e:
        raise VectorIndexError(f"cannot read {path}: {e}; rebuild it with `audiosim index`") from None
    return index_class(sidecar["kind"]).from_faiss(raw, sidecar, device=device), sidecar

"""Search a collection: rebuild its embedder, keep its FAISS index fresh, answer queries by example."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio import load_audio
from audiosim.engine.embedders import get_embedder
from audiosim.engine.embedders.base import Embedder
from audiosim.engine.ingest import segment_frames
from audiosim.engine.pooling import PoolingSpec
from audiosim.engine.store import Collection
from audiosim.errors import CollectionMismatchError, VectorIndexError
from audiosim.indexes.base import VectorIndex as FlatIndex
from audiosim.indexes.kinds import load_index as _load_saved, make_index

INDEX_DIR = "index"


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    id: int
    path: str
    label: str | None
    offset_s: float
    duration_s: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def embedder_for(collection: Collection, *, weights: str | None = None, **options) -> Embedder:
    """The embedder that made ``collection``'s vectors, checked by its weights sha256."""
    opts = {k: v for k, v in collection.manifest.get("embedder_options", {}).items() if v is not None}
    if weights is not None:
        opts["weights"] = weights
    opts.update(options)
    emb = get_embedder(collection.embedder["name"], **opts)
    want, got = collection.embedder, emb.info.to_dict()
    for key in ("version", "weights_sha256", "dim", "sample_rate"):
        if want.get(key) != got.get(key):
            raise CollectionMismatchError(
                f"the {want['name']} embedder resolved now differs from the one that built {collection.root} "
                f"({key}: collection {want.get(key)!r}, now {got.get(key)!r}); pass --weights with the original weights"
            )
    return emb


def index_vectors(collection: Collection, vectors: np.ndarray) -> np.ndarray:
    """Vectors as the index sees them (the collection's label-free post-processing, if any)."""
    spec = collection.manifest.get("postprocess")
    if not spec:
        return vectors
    from audiosim.indexes.postprocess import Postprocessor

    return Postprocessor.load(collection.root / INDEX_DIR).transform(vectors)


def build_index(collection: Collection) -> FlatIndex:
    """(Re)build and save the collection's exact index from its stored vectors."""
    ids, vectors = collection.embeddings()
    x = index_vectors(collection, vectors) if len(ids) else vectors
    index = make_index(collection.manifest.get("index_kind", "flat"), dim=x.shape[1], metric=collection.metric)
    if len(ids):
        index.add(ids, x)
    index.save(collection.root / INDEX_DIR, extra={"collection_revision": collection.manifest["revision"]})
    return index


def load_index(collection: Collection) -> FlatIndex:
    """The saved index, rebuilt first when missing or older than the collection."""
    d = collection.root / INDEX_DIR
    try:
        index, sidecar = _load_saved(d)
    except VectorIndexError:
        return build_index(collection)
    stale = (sidecar.get("collection_revision") != collection.manifest["revision"] or len(index) != len(collection)
             or sidecar.get("kind") != collection.manifest.get("index_kind", "flat"))
    if stale:
        return build_index(collection)
    return index


def embed_file(embedder: Embedder, path: str | Path, pooling: PoolingSpec, *, segment_s: float | None = None,
               nan_policy: str = "error") -> list[tuple[float, float, np.ndarray]]:
    """(offset_s, duration_s, pooled vector) for one file, as ingest computes them."""
    sr = embedder.info.sample_rate
    wave = load_audio(path, sample_rate=sr, nan_policy=nan_policy)
    frames, times = embedder.embed_frames(wave)
    return segment_frames(frames, times, segment_s=segment_s, duration_s=wave.size / sr, pooling=pooling)


def search_vectors(collection: Collection, vectors: np.ndarray, *, k: int, index: FlatIndex | None = None) -> list[list[Hit]]:
    """Top-k hits for each query vector."""
    index = index or load_index(collection)
    result = index.search(index_vectors(collection, np.atleast_2d(vectors)), min(k, max(len(index), 1)))
    wanted = {int(i) for i in result.ids.ravel() if i >= 0}
    meta = {r["id"]: r for r in collection.records() if r["id"] in wanted}
    hits = []
    for scores, ids in zip(result.scores, result.ids):
        row = []
        for rank, (s, i) in enumerate(zip(scores, ids), 1):
            if i < 0:
                continue
            m = meta[int(i)]
            row.append(Hit(rank=rank, score=float(s), id=int(i), path=m["path"], label=m["label"],
                           offset_s=float(m["offset_s"]), duration_s=float(m["duration_s"])))
        hits.append(row)
    return hits


def query_file(collection: Collection, clip: str | Path, *, k: int = 10, embedder: Embedder | None = None,
               weights: str | None = None) -> list[Hit]:
    """Rank the collection's vectors by similarity to ``clip`` (whole clip pooled)."""
    embedder = embedder or embedder_for(collection, weights=weights)
    pooling = PoolingSpec.from_dict(collection.pooling)
    [(_, _, vec)] = embed_file(embedder, clip, pooling)
    return search_vectors(collection, vec[None, :], k=k)[0]

"""A collection's index: built and saved by the writer, loaded (or built in memory) by readers.

The index searches the vectors *as the index sees them*: the stored (raw pooled) vectors passed
through the collection's label-free post-processing (``manifest.postprocess``, fitted on the
collection itself) — Parquet keeps the raw vectors, the index the transformed ones.

* :func:`ensure_index` runs under the writer lock: when the manifest's saved index does not
  cover the current revision, kind and post-processing, it fits the post-processing, builds
  the index of ``manifest.index_kind``, saves both into a new folder ``index/r<revision>-<id>/``
  and commits the manifest's ``index`` record. The previous folder stays until the next commit,
  so readers holding the previous manifest keep working.
* :func:`load_for_search` never writes: it loads the saved index when it is current, and
  otherwise builds one in memory from the snapshot (e.g. while an ingest run has committed
  parts but not yet rebuilt the index).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from audiosim.engine.manifest import IndexRecord, Manifest
from audiosim.errors import VectorIndexError

INDEX_DIR = "index"
POSTPROCESS_FILES = ("postprocess.json", "postprocess.npz")


@dataclass(frozen=True)
class SearchIndex:
    """What a search needs: the index, the post-processing (or None) and the revision they match."""

    index: object  # audiosim.indexes.base.VectorIndex
    postprocessor: object | None  # audiosim.indexes.postprocess.Postprocessor
    revision: int
    saved: bool  # loaded from disk (True) or built in memory from the snapshot (False)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Stored-space vectors to index space."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        return self.postprocessor.transform(x) if self.postprocessor is not None else x


def _build(collection, m: Manifest):
    """(index, postprocessor) over the snapshot's stored vectors."""
    from audiosim.indexes.kinds import make_index
    from audiosim.indexes.postprocess import Postprocessor

    ids, X = collection.embeddings()
    pp = None
    if m.postprocess:
        if len(ids) < 2:
            raise VectorIndexError(f"post-processing {m.postprocess!r} is fitted on the collection's own vectors and "
                                   f"needs at least 2; {collection.root} holds {len(ids)}")
        pp = Postprocessor(m.postprocess).fit(X)
        X = pp.transform(X)
    dim = X.shape[1] if X.ndim == 2 and X.shape[1] else m.dim
    index = make_index(m.index_kind, dim=dim, metric=m.metric, **m.index_params)
    if len(ids):
        index.add(ids, X)
    return index, pp


def ensure_index(writer, *, force: bool = False) -> IndexRecord:
    """Make the saved index cover the writer's current manifest (see the module docstring)."""
    m = writer.manifest
    if not force and m.index_fresh:
        return m.index
    index, pp = _build(writer.collection, m)
    rel = f"{INDEX_DIR}/r{m.revision:08d}-{uuid.uuid4().hex[:8]}"
    d = writer.root / rel
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    if pp is not None:
        from audiosim.files import sha256_file

        pp.save(d)
        files = {name: {"sha256": sha256_file(d / name), "bytes": (d / name).stat().st_size} for name in POSTPROCESS_FILES}
    index.save(d, extra={"collection_revision": m.revision, "postprocess": m.postprocess, "postprocess_files": files})
    record = IndexRecord(dir=rel, revision=m.revision, kind=m.index_kind, count=len(index), postprocess=m.postprocess)
    writer.set_index(record)
    return record


def _load_postprocessor(d, sidecar: dict, spec: str):
    """The saved post-processing, verified against the sidecar's checksums and the manifest's spec."""
    from audiosim.files import sha256_file
    from audiosim.indexes.postprocess import Postprocessor

    fix = "rebuild the index with `audiosim repair` (or `audiosim index`)"
    for name, want in (sidecar.get("postprocess_files") or {}).items():
        path = d / name
        if not path.is_file() or path.stat().st_size != want.get("bytes") or sha256_file(path) != want.get("sha256"):
            raise VectorIndexError(f"{path} does not match the checksum in {d / 'index.json'} (garbled or replaced); {fix}")
    pp = Postprocessor.load(d)
    if pp.spec != spec:
        raise VectorIndexError(f"{d} holds post-processing {pp.spec!r}, the collection asks for {spec!r}; {fix}")
    return pp


def load_for_search(collection) -> SearchIndex:
    """The collection's current index: loaded when saved for this revision, else built in memory."""
    from audiosim.indexes.kinds import load_index
    from audiosim.indexes.postprocess import Postprocessor

    m = collection.manifest
    if m.index_fresh:
        d = collection.root / m.index.dir
        try:
            if not d.is_dir():
                raise VectorIndexError(f"{d} is missing; rebuild the index with `audiosim index` or `audiosim repair`")
            index, sidecar = load_index(d)
            pp = _load_postprocessor(d, sidecar, m.postprocess) if m.postprocess else None
        except VectorIndexError:
            if collection.refresh():  # retired by a writer since this snapshot was taken: use the new one
                return load_for_search(collection)
            raise
        return SearchIndex(index=index, postprocessor=pp, revision=m.revision, saved=True)
    index, pp = _build(collection, m)
    return SearchIndex(index=index, postprocessor=pp, revision=m.revision, saved=False)

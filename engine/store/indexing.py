"""A collection's index: built (streaming, or updated in place) by the writer, loaded by readers.

The index searches the vectors *as the index sees them*: the stored (raw pooled) vectors passed
through the collection's label-free post-processing (``manifest.postprocess``, fitted on the
collection itself) — Parquet keeps the raw vectors, the index the transformed ones.

Building (:func:`ensure_index`, under the writer lock)
-------------------------------------------------------
When the manifest's saved index does not cover the current revision, kind, parameters
(``index_params``, recorded in the index record) and post-processing, the writer brings it up to date and saves it into a new folder
``index/r<revision>-<id>/`` (the previous one stays until the next commit, so readers holding
the previous manifest keep working):

* **In place** when only vectors were added or removed since the saved index was built (same
  kind and parameters, no post-processing, and :func:`audiosim.indexes.maintenance.needs_retrain` sees no
  reason to retrain): the saved index is loaded, the collection's new ids are added and the
  vanished ones removed. Nothing is re-trained and no other vector is read.
* **Rebuilt** otherwise, streaming: the post-processing is fitted on a uniform sample of at
  most :data:`POSTPROCESS_SAMPLE` stored vectors; trained kinds learn their structure from a
  sample; then the Parquet record batches are added part by part, so the float vectors of the
  whole collection are never in memory at once. ``index_kind="auto"`` chooses the kind from the
  collection's size and ``index_params["memory_budget"]`` and tunes its search knob to
  ``index_params["target_recall"]`` on held-out queries drawn from the collection
  (:func:`audiosim.indexes.auto.choose_and_build`); the sidecar records what it chose and the
  recall it measured.

Kinds that store compressed codes re-rank their candidates exactly with the stored float vectors
(:attr:`SearchIndex.fetch` reads exactly those rows from the parts' memory-mapped vector files,
:mod:`audiosim.engine.store.vectorfile`, and post-processes them). Before anything else the writer
gives every part written before vector files existed its vector file
(:meth:`~audiosim.engine.store.store.CollectionWriter.ensure_vector_files`).

Loading (:func:`load_for_search`) never writes: the saved index when it is current; otherwise
one built in memory from the snapshot (e.g. while an ingest run has committed parts but not yet
updated the index).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from audiosim.engine.store.manifest import IndexRecord, Manifest
from audiosim.engine.store.store import embedding_matrix
from audiosim.errors import VectorIndexError
from audiosim.files import sha256_file
from audiosim.indexes import streaming
from audiosim.indexes.auto import DEFAULT_MEMORY_BUDGET, DEFAULT_TARGET_RECALL, choose_and_build
from audiosim.indexes.kinds import AUTO, auto_target_recall, load_index, make_index
from audiosim.indexes.maintenance import needs_retrain
from audiosim.indexes.postprocess import Postprocessor
from audiosim.indexes.streaming import sample_rows

INDEX_DIR = "index"
POSTPROCESS_FILES = ("postprocess.json", "postprocess.npz")
POSTPROCESS_SAMPLE = 200_000  # rows the post-processing is fitted on (all of them in smaller collections)
TRAIN_SAMPLE = 100_000  # rows a trained kind (IVF, PQ, SQ) learns from, when not chosen by `auto`
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class SearchIndex:
    """What a search needs: the index, the post-processing (or None), the revision, and stored vectors on demand."""

    index: object  # audiosim.indexes.base.VectorIndex
    postprocessor: object | None  # audiosim.indexes.postprocess.Postprocessor
    revision: int
    saved: bool  # loaded from disk (True) or built in memory from the snapshot (False)
    fetch: Callable[[np.ndarray], np.ndarray] | None = None  # ids -> stored vectors in index space

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Stored-space vectors to index space."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        return self.postprocessor.transform(x) if self.postprocessor is not None else x


def _fetcher(collection, pp) -> Callable[[np.ndarray], np.ndarray]:
    """ids -> the stored vectors of those ids, in index space (for exact re-ranking)."""
    def fetch(ids: np.ndarray) -> np.ndarray:
        x = collection.vectors(np.asarray(ids, dtype=np.int64))
        return pp.transform(x) if pp is not None else x
    return fetch


def _batches(collection, pp) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """A callable giving a fresh pass over the snapshot's (ids, vectors in index space), part by part."""

    def batches():
        for b in collection.iter_batches(["id", "embedding"], batch_rows=BATCH_ROWS):
            x = embedding_matrix(b, collection.dim)
            yield b.column(0).to_numpy(), (pp.transform(x) if pp is not None else x)
    return batches


MIN_POSTPROCESS_VECTORS = 2  # post-processing is fitted on the collection's own vectors


def _fit_postprocessor(collection, spec: str):

    if len(collection) < MIN_POSTPROCESS_VECTORS:
        raise VectorIndexError(f"post-processing {spec!r} is fitted on the collection's own vectors and needs at least 2; "
                               f"{collection.root} holds {len(collection)}")
    _, sample = sample_rows(_batches(collection, None)(), min(len(collection), POSTPROCESS_SAMPLE), seed=0)
    return Postprocessor(spec).fit(sample)


def _build(collection, m: Manifest, *, directory=None):
    """(index, postprocessor) over the snapshot's stored vectors, streaming part by part."""

    pp = _fit_postprocessor(collection, m.postprocess) if m.postprocess else None
    dim = pp.out_dim if pp is not None else m.dim
    batches = _batches(collection, pp)
    n = len(collection)
    if n == 0:  # nothing to train on or search: an empty exact index stands in for any kind
        index = make_index("flat", dim=dim, metric=m.metric)
        index.build_info = {"requested": m.index_kind, "kind": "flat", "reason": "the collection is empty"}
        return index, pp
    if m.index_kind == AUTO:
        params = m.index_params
        index = choose_and_build(batches, n=n, dim=dim, metric=m.metric,
                                 memory_budget=params.get("memory_budget", DEFAULT_MEMORY_BUDGET),
                                 target_recall=auto_target_recall(params, DEFAULT_TARGET_RECALL),
                                 fetch=_fetcher(collection, pp), directory=directory)
        return index, pp
    index = make_index(m.index_kind, dim=dim, metric=m.metric, **m.index_params)
    if index.TRAINED:
        index.train(streaming.sample_rows(batches(), min(n, TRAIN_SAMPLE), seed=0)[1])
    streaming.build(index, batches())
    return index, pp


def _update_in_place(writer, m: Manifest):
    """The saved index brought up to date by adding new ids and removing vanished ones, or None to rebuild."""

    old = m.index
    if old is None or m.postprocess or old.postprocess or old.kind != m.index_kind or old.params != m.index_params:
        return None  # a change of kind, parameters or post-processing rebuilds
    d = writer.root / old.dir
    try:
        index, sidecar = load_index(d)
    except VectorIndexError:
        return None  # unreadable or from another version: rebuild
    if needs_retrain(sidecar, len(writer.collection)) is not None:
        return None
    have = index.ids()
    want = writer.collection.items().ids
    new = np.setdiff1d(want, have, assume_unique=True)
    gone = np.setdiff1d(have, want, assume_unique=True)
    if gone.size:
        index.remove(gone)
    if new.size:
        index.add(new, writer.collection.vectors(new))
    if needs_retrain(index, len(writer.collection)) is not None:
        return None
    return index


def ensure_index(writer, *, force: bool = False) -> IndexRecord | None:
    """Make the saved index cover the writer's current manifest (see the module docstring).

    Post-processing is fitted on the collection's own vectors and needs at least 2: below that no
    index is saved (a saved one is dropped, so none is ever stale) and None is returned; searches
    then say why (:func:`load_for_search`).
    """
    writer.ensure_vector_files()  # collections written before vector files existed get them here
    m = writer.manifest
    if m.postprocess and len(writer.collection) < MIN_POSTPROCESS_VECTORS:
        if m.index is not None:
            writer.set_index(None)
        return None
    if not force and m.index_fresh:
        return m.index
    rel = f"{INDEX_DIR}/r{m.revision:08d}-{uuid.uuid4().hex[:8]}"
    d = writer.root / rel
    d.mkdir(parents=True, exist_ok=True)
    index = None if force else _update_in_place(writer, m)
    pp = None
    how = "updated in place"
    if index is None:
        index, pp = _build(writer.collection, m, directory=d)
        how = "rebuilt"
    files = {}
    if pp is not None:
        pp.save(d)
        files = {name: {"sha256": sha256_file(d / name), "bytes": (d / name).stat().st_size} for name in POSTPROCESS_FILES}
    index.save(d, extra={"collection_revision": m.revision, "postprocess": m.postprocess, "postprocess_files": files,
                         "how": how})
    record = IndexRecord(dir=rel, revision=m.revision, kind=m.index_kind, count=len(index), postprocess=m.postprocess,
                         params=dict(m.index_params))
    writer.set_index(record)
    return record


def _load_postprocessor(d, sidecar: dict, spec: str):
    """The saved post-processing, verified against the sidecar's checksums and the manifest's spec."""

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
        return SearchIndex(index=index, postprocessor=pp, revision=m.revision, saved=True,
                           fetch=_fetcher(collection, pp))
    index, pp = _build(collection, m)
    return SearchIndex(index=index, postprocessor=pp, revision=m.revision, saved=False, fetch=_fetcher(collection, pp))

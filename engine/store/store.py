"""The vector store: a collection directory of immutable Parquet parts named by a JSON manifest.

Layout of a collection ``DIR``::

    DIR/collection.json         the manifest (:class:`audiosim.engine.store.manifest.Manifest`): embedder,
                                pooling, metric, live parts with their sizes and sha256, next id,
                                revision, the saved index
    DIR/parts/part-<rev>-<hex>.parquet
                                immutable parts: id, path, content_sha256, offset_s, duration_s,
                                label, embedding (fixed-size float32 list) [, tags]; written with
                                Parquet page checksums; the schema metadata (key ``audiosim``)
                                repeats the collection's settings (embedder, pooling, metric,
                                segments, sources, ...) so a lost manifest can be rebuilt; <rev>
                                is the revision the part was written for
    DIR/parts/part-<rev>-<hex>.vec
                                the part's vectors again as a memory-mapped fixed-width float32
                                file with per-row crc32 (:mod:`audiosim.engine.store.vectorfile`),
                                written and renamed with its part, size and sha256 in the part's
                                manifest record: O(k) random access for re-ranking, ``vectors``,
                                more-like-this and exact filtered searches
    DIR/index/r<rev>-<hex>/     a saved index (FAISS file, sidecar with its sha256, post-processing)
    DIR/.lock                   the writer lock (:mod:`audiosim.engine.store.lock`)
    DIR/errors.jsonl            per-file failures of the last ingest run
    .<name>.<hex>.tmp           temporary files of a write in progress (in DIR, parts/, index/r*/)

This module is the only code that reads or writes ``collection.json`` and the parts
(:mod:`audiosim.engine.store.integrity` checks and repairs them through its functions). Nothing here
reads, moves or deletes anything outside ``collection.json``, ``errors.jsonl``, ``parts/``,
``index/`` and its own temporary files, so the user's audio is never touched.

Writers and readers
-------------------
* **One writer at a time.** Every change goes through a :class:`CollectionWriter` (``with
  coll.writer(wait=10) as w: ...``), which holds the OS lock on ``DIR/.lock``, re-reads the
  manifest after taking it and removes temporary files a killed writer left. Each change is one
  atomic commit: new parts are written under a temporary name, fsynced and renamed, then the
  manifest is replaced (temporary file + rename) with the next revision. A process killed at
  any point leaves the previous or the new revision, never a mix; a full disk or a read-only
  folder is a :class:`CollectionError` and the previous revision stays.
* **Readers see a snapshot.** A :class:`CollectionStore` reads the parts named by the manifest it
  loaded. Parts are never modified; a part leaves the disk only when the lock holder commits
  and neither the new manifest nor the one it replaced names it, so a reader holding the
  previous revision can still read it. A reader whose snapshot is older than that finds a part
  gone, refreshes its manifest and retries (:meth:`CollectionStore._read`); :meth:`iter_batches`,
  which cannot restart what it already yielded, raises a :class:`CollectionError` instead.
* **Clean-up under the lock.** Parts and index folders that no kept manifest names (left by a
  killed writer, or retired) are removed by the next commit; temporary files as soon as a
  writer takes the lock.

Integrity
---------
Every part's byte size and sha256 are in the manifest; reads check the size, the Parquet page
checksums, the column names and types and the part's id range (and :meth:`embeddings` that
vectors are finite); ``audiosim check`` (:func:`audiosim.engine.store.integrity.check_collection`)
re-hashes every file. A mismatch is a :class:`CorruptCollectionError` naming the file and the
fix (``audiosim repair``). Ids are int64, unique, never reused, and equal the FAISS ids.

A part's vector file (``.vec``) is written under a temporary name and renamed just before its
part (a kill in between leaves an unnamed file the next commit removes); reads check its size
and header when it is first opened and each row's crc32 the first time the row is read;
``audiosim check`` compares it with its part byte for byte, and ``audiosim repair`` (or
:meth:`CollectionWriter.ensure_vector_files`) writes it again from the Parquet part, which
stays the source of truth. Parts written before vector files existed are read from Parquet
until the next ``audiosim index`` or ``repair`` gives them one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from audiosim import __version__
from audiosim.engine.models.embedders.base import EmbedderInfo, class_names_sha256
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.models.tags import (
    COUNT_MIN_SCORE,
    TOP_N,
    ClassMap,
    tag_counts,
    tags_arrow_type,
    tags_from_arrow,
    tags_to_arrow,
)
import audiosim.engine.store.vectorfile as vectorfile
from audiosim.engine.store.layout import INDEX, INDEX_DIR_FILE, PART_FILE, PARTS, TEMP_FILE, VEC_FILE  # noqa: F401
from audiosim.engine.store.lock import WriterLock
from audiosim.engine.store.manifest import FORMAT_VERSION, IndexRecord, Manifest, ManifestError, PartRecord
from audiosim.errors import CollectionError, CollectionMismatchError, CorruptCollectionError, NoClassifierHeadError
from audiosim.files import atomic_path, dumps_strict, fsync_dir, sha256_file, write_bytes_atomic, write_json_atomic
from audiosim.indexes.vectors import Metric

MANIFEST = "collection.json"
COLUMNS = ("id", "path", "content_sha256", "offset_s", "duration_s", "label", "embedding")
TAGS = "tags"
ERRORS_FILE = "errors.jsonl"
REPAIR = "run `audiosim repair --collection {root}` (it drops what is unreadable and lists the files to re-index)"
ROOT_FILES = (MANIFEST, ERRORS_FILE)  # the root files a writer replaces (through temporary files)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Rows:
    """A batch of vectors with their provenance (all columns but ``id``).

    ``tag_ids`` / ``tag_scores``: for collections that store classifier tags, each row's best
    classes (index into the collection's ``class_names``, -1 = none) and their scores, best first
    ([n, N] int16 and float32, :func:`audiosim.engine.models.tags.top_tags`); ``None`` otherwise.
    """

    path: list[str]
    content_sha256: list[str]
    offset_s: np.ndarray
    duration_s: np.ndarray
    label: list[str | None]
    embedding: np.ndarray  # [n, dim] float32
    tag_ids: np.ndarray | None = None
    tag_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.path)

    @classmethod
    def concat(cls, batches: Iterable["Rows"]) -> "Rows":
        b = list(batches)
        has_tags = bool(b) and all(r.tag_ids is not None for r in b)
        width = max((r.tag_ids.shape[1] for r in b), default=0) if has_tags else 0
        return cls(
            path=[p for r in b for p in r.path],
            content_sha256=[s for r in b for s in r.content_sha256],
            offset_s=np.concatenate([r.offset_s for r in b]) if b else np.zeros(0),
            duration_s=np.concatenate([r.duration_s for r in b]) if b else np.zeros(0),
            label=[x for r in b for x in r.label],
            embedding=np.concatenate([r.embedding for r in b]) if b else np.zeros((0, 0), np.float32),
            tag_ids=np.concatenate([_pad_tags(r.tag_ids, width, -1) for r in b]) if has_tags else None,
            tag_scores=np.concatenate([_pad_tags(r.tag_scores, width, np.nan) for r in b]) if has_tags else None,
        )


def _pad_tags(a: np.ndarray, width: int, fill) -> np.ndarray:
    return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)


@dataclass(frozen=True)
class StoredFile:
    """What the collection holds for one audio file."""

    content_sha256: str
    ids: tuple[int, ...]
    label: str | None


@dataclass(frozen=True)
class ItemTable:
    """Per-row metadata as numpy columns, sorted by id, for O(log n) lookups and vectorised filters.

    ``paths[path_code[i]]`` is row i's file; ``labels[label_code[i]]`` its label (code -1: none).
    """

    ids: np.ndarray
    path_code: np.ndarray
    paths: tuple[str, ...]
    label_code: np.ndarray
    labels: tuple[str, ...]
    offset_s: np.ndarray
    duration_s: np.ndarray
    content_sha256: tuple[str, ...] = ()
    tag_ids: np.ndarray | None = None  # [n, N] stored classifier tags (collections with tags)
    tag_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.size)

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of ``ids`` (-1 where an id is unknown)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, max(self.ids.size - 1, 0))
        found = (self.ids.size > 0) & (self.ids[pos] == ids) if self.ids.size else np.zeros(ids.shape, bool)
        return np.where(found, pos, -1)

    def label_counts(self) -> dict[str, int]:
        counts = np.bincount(self.label_code[self.label_code >= 0], minlength=len(self.labels))
        return {name: int(c) for name, c in sorted(zip(self.labels, counts)) if c}


class CollectionStore:
    """A handle on a collection directory: a manifest snapshot plus reads of the parts it names."""

    def __init__(self, root: str | Path, manifest: Manifest) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._manifest_file = str(self.root / MANIFEST)  # stat once per search: no Path built each time
        self._stamp = _stamp(self._manifest_file)
        self._vmap: tuple | None = None  # (parts of the snapshot it covers, VectorMap, {name: VectorFile})

    # ------------------------------------------------------------------ lifecycle
    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / MANIFEST).is_file()

    @classmethod
    def open(cls, root: str | Path) -> "CollectionStore":
        root = Path(root)
        if not root.is_dir():
            raise CollectionError(f"{root} is not a folder, so not a collection; create one with "
                                  f"`audiosim index FOLDER --collection DIR`")
        return cls(root, read_manifest(root))

    @classmethod
    def create(cls, root: str | Path, *, embedder: EmbedderInfo | dict, embedder_options: dict | None = None,
               pooling: PoolingSpec | dict, metric: str = "cosine", segment_s: float | None = None,
               segment_hop_s: float | None = None, index_kind: str = "flat", index_params: dict | None = None,
               class_names: Sequence[str] | None = None, extra: dict | None = None, exist_ok: bool = False,
               wait: float | None = None) -> "CollectionStore":
        """A new, empty collection (the folder may exist but must not hold one).

        ``exist_ok=True``: when another process created the collection first (two ``audiosim
        index`` runs starting at once), open it instead -- provided it has the same embedder,
        pooling, metric and segments; otherwise a :class:`CollectionMismatchError`.
        ``class_names``: the embedder's classifier classes; the collection then stores each
        vector's top tags (``tags`` column) and records the class map and its sha256.
        """

        root = Path(root)
        info = embedder if isinstance(embedder, EmbedderInfo) else EmbedderInfo(**embedder)
        spec = pooling if isinstance(pooling, PoolingSpec) else PoolingSpec.from_dict(pooling)
        metric = Metric.parse(metric)
        lock = WriterLock(root, wait=wait, purpose="create")  # a bad wait fails before anything is created
        try:
            (root / PARTS).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CollectionError(f"cannot create the collection folder {root}/{PARTS} ({e.strerror or e}); "
                                  "choose a --collection path in a writable folder") from None
        with lock:
            now = _now()
            m = Manifest(embedder=info, pooling=spec, dim=spec.dim(info.dim), metric=metric,
                         embedder_options=dict(embedder_options or {}), segment_s=segment_s, segment_hop_s=segment_hop_s,
                         index_kind=index_kind, index_params=dict(index_params or {}),
                         class_map_sha256=class_names_sha256(class_names) if class_names else None,
                         class_names=tuple(class_names or ()), created=now, updated=now, audiosim_version=__version__, extra=dict(extra or {}))
            if cls.exists(root):
                if not exist_ok:
                    raise CollectionError(f"{root} already holds a collection")
                existing = cls.open(root)
                existing._check_same_settings(m)
                return existing
            m.validate(source=str(root / MANIFEST))
            write_manifest(root, m)
        return cls(root, m)

    def _check_same_settings(self, m: Manifest) -> None:
        mine = self.manifest
        keys = ("embedder", "pooling", "metric", "dim", "segment_s", "segment_hop_s", "class_map_sha256")
        differ = [k for k in keys if getattr(mine, k) != getattr(m, k)]
        if differ:
            raise CollectionMismatchError(
                f"{self.root} was just created by another process with other settings ({', '.join(differ)}); "
                "index into another --collection directory, or omit the options to use the collection's own")

    # ------------------------------------------------------------------ snapshot
    def refresh(self) -> bool:
        """Re-read the manifest if another process replaced it; True when the snapshot changed."""
        stamp = _stamp(self._manifest_file)
        if stamp == self._stamp:
            return False
        m = read_manifest(self.root)
        changed = m != self.manifest
        self.manifest, self._stamp = m, stamp
        return changed

    # ------------------------------------------------------------------ properties
    @property
    def embedder(self) -> EmbedderInfo:
        return self.manifest.embedder

    @property
    def pooling(self) -> PoolingSpec:
        return self.manifest.pooling

    @property
    def metric(self) -> str:
        return self.manifest.metric

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def segment_s(self) -> float | None:
        return self.manifest.segment_s

    @property
    def segment_hop_s(self) -> float | None:
        return self.manifest.segment_hop_s

    @property
    def index_kind(self) -> str:
        return self.manifest.index_kind

    @property
    def postprocess(self) -> str | None:
        return self.manifest.postprocess

    @property
    def revision(self) -> int:
        return self.manifest.revision

    @property
    def sources(self) -> tuple[str, ...]:
        return self.manifest.sources

    @property
    def has_tags(self) -> bool:
        return self.manifest.class_map_sha256 is not None

    @property
    def class_map(self):
        """The classifier's :class:`audiosim.engine.models.tags.ClassMap` when the collection stores tags, else None."""
        if not self.has_tags:
            return None

        return ClassMap(self.manifest.class_names)

    def tag_counts(self, *, min_score: float | None = None) -> list[tuple[str, int]]:
        """(tag, how many vectors carry it with at least ``min_score``), most frequent first."""

        if not self.has_tags:
            raise NoClassifierHeadError(f"{self.root} stores no classifier tags (its embedder {self.embedder.name!r} has no classifier "
                       "head, or it was indexed before tags existed); index with yamnet or panns to get tags")
        items = self.items()
        return tag_counts(items.tag_ids, items.tag_scores, self.manifest.class_names,
                          min_score=COUNT_MIN_SCORE if min_score is None else min_score)

    def __len__(self) -> int:
        return self.manifest.count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} vectors, revision {self.revision})"

    def check_compatible(self, *, embedder: EmbedderInfo, pooling: PoolingSpec) -> None:
        """Refuse vectors from another embedder, version, weights, sample rate, dim or pooling."""
        mine = self.embedder
        problems = []
        for key in ("name", "version", "weights_sha256", "sample_rate", "dim", "window_s", "hop_s"):
            if getattr(mine, key) != getattr(embedder, key):
                problems.append(f"embedder {key}: collection has {getattr(mine, key)!r}, new vectors have {getattr(embedder, key)!r}")
        if self.pooling != pooling:
            problems.append(f"pooling: collection has {self.pooling.name!r}, new vectors have {pooling.name!r}")
        if problems:
            raise CollectionMismatchError(
                f"refusing to mix vectors in {self.root}: " + "; ".join(problems)
                + ". Use a new --collection directory, or the same embedder, weights and pooling."
            )

    # ------------------------------------------------------------------ reading
    def part_path(self, part: PartRecord) -> Path:
        return self.root / part.name

    def _read_part(self, part: PartRecord, columns: Sequence[str]):
        """The ``columns`` of one part of the snapshot, checked against its record (size, rows, types, ids)."""
        path = self.part_path(part)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise _MissingPart(part.name) from None
        except OSError as e:
            raise CorruptCollectionError(f"cannot read {path} ({e.strerror or e}); {REPAIR.format(root=self.root)}") from None
        if part.bytes is not None and size != part.bytes:
            raise CorruptCollectionError(f"{path} has {size} bytes, the manifest says {part.bytes} (truncated or "
                                         f"replaced); {REPAIR.format(root=self.root)}")
        try:
            table = read_part_file(path, columns=columns)
        except FileNotFoundError:
            raise _MissingPart(part.name) from None
        problem = part_table_problem(table, part, expected=part_schema(self.manifest))
        if problem:
            raise CorruptCollectionError(f"{path} {problem}; {REPAIR.format(root=self.root)}")
        return table

    def _read(self, fn):
        """Run ``fn(manifest)`` on the snapshot; if a part vanished (retired by a writer), refresh and retry."""
        for _ in range(5):
            m = self.manifest
            try:
                return fn(m)
            except _MissingPart as e:
                if not self.refresh():
                    fix = (vectorfile.REPAIR if e.name.endswith(vectorfile.SUFFIX) else REPAIR).format(root=self.root)
                    raise CorruptCollectionError(f"{self.root / e.name} is missing; {fix}") from None
        raise CollectionError(f"{self.root} changed under five reads in a row; try again")

    def _columns(self, columns: Iterable[str] | None) -> list[str]:
        cols = list(columns) if columns is not None else list(COLUMNS) + ([TAGS] if self.has_tags else [])
        if "id" not in cols:
            cols = ["id"] + cols
        return cols

    def read_table(self, columns: Iterable[str] | None = None):
        """All live rows of the snapshot as one pyarrow Table, ordered by id."""
        import pyarrow as pa

        cols = self._columns(columns)

        def read(m: Manifest):
            tables = [self._read_part(p, cols) for p in m.parts]
            if not tables:
                return _schema(m.dim, _metadata(m), tags=self.has_tags).empty_table().select(cols)
            return pa.concat_tables(tables).sort_by("id")

        return self._read(read)

    def read_part(self, part: PartRecord, columns: Iterable[str] | None = None):
        """One part of the snapshot as a pyarrow Table (every column by default), verified as every read is."""
        cols = self._columns(columns)
        return self._read(lambda m: self._read_part(part, cols))

    def iter_batches(self, columns: Iterable[str] | None = None, *, batch_rows: int = 65536) -> Iterator:
        """pyarrow RecordBatches of the snapshot, part by part (ids ascending within a part), bounded memory.

        The parts are those of the snapshot when iteration starts; if a writer retires one of them
        before it is read (two commits later), a :class:`CollectionError` says to iterate again.
        """
        cols = self._columns(columns)

        def present(m: Manifest) -> list[PartRecord]:
            for p in m.parts:
                if not self.part_path(p).exists():
                    raise _MissingPart(p.name)
            return list(m.parts)

        parts = self._read(present)
        for part in parts:
            try:
                table = self._read_part(part, cols)
            except _MissingPart:
                raise CollectionError(f"{self.root} changed while it was read (a writer retired {part.name}); "
                                      "read it again") from None
            yield from table.to_batches(max_chunksize=batch_rows)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids[n] int64, vectors[n, dim] float32) as stored (raw pooled vectors), ordered by id."""
        t = self.read_table(["id", "embedding"])
        X = embedding_matrix(t, self.dim)
        if X.size and not np.isfinite(X).all():
            raise CorruptCollectionError(f"{self.root} holds non-finite embeddings; {REPAIR.format(root=self.root)}")
        return t["id"].to_numpy(), X

    def vector_map(self) -> vectorfile.VectorMap:
        """id -> stored vector over the snapshot's parts that have vector files (built once per snapshot)."""
        return self._read(lambda m: self._vector_map(m))

    def _vector_map(self, m: Manifest) -> vectorfile.VectorMap:
        cached = self._vmap
        if cached is not None and (cached[0] is m.parts or cached[0] == m.parts):
            return cached[1]
        old = cached[2] if cached is not None else {}
        files = {}
        for p in m.parts:
            if not p.has_vectors:
                continue
            name = vectorfile.vector_file_name(p.name)
            vf = old.get(name)
            if vf is None:
                try:
                    vf = vectorfile.VectorFile(self.root / name, rows=p.rows, dim=m.dim, expected_bytes=p.vec_bytes,
                                               root=self.root)
                except FileNotFoundError:
                    raise _MissingPart(name) from None
                except OSError as e:
                    raise CorruptCollectionError(f"cannot read {self.root / name} ({_reason(e)}); "
                                                 f"{REPAIR.format(root=self.root)}") from None
                if p.min_id is not None and vf.ids.size and (int(vf.ids.min()), int(vf.ids.max())) != (p.min_id, p.max_id):
                    raise CorruptCollectionError(f"{self.root / name} holds ids {int(vf.ids.min())}..{int(vf.ids.max())}, "
                                                 f"its part {p.min_id}..{p.max_id}; {REPAIR.format(root=self.root)}")
            files[name] = vf
        vmap = vectorfile.VectorMap(list(files.values()))
        self._vmap = (m.parts, vmap, files)
        return vmap

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids`` [len(ids), dim], in the order given; unknown ids are an error.

        O(k log n) through the parts' vector files; parts written before vector files existed are
        read from Parquet (only those whose id range holds a requested id).
        """
        want = ids if type(ids) is np.ndarray and ids.dtype == np.int64 and ids.ndim == 1 else np.asarray(
            ids, dtype=np.int64).ravel()
        if want.size == 0:
            return np.zeros((0, self.dim), np.float32)

        def read(m: Manifest):
            vmap = self._vector_map(m)
            found = vmap.take(want, m.dim)
            if found is not None:
                return found
            pos = vmap.positions(want)
            out = np.empty((want.size, m.dim), np.float32)
            hit = pos >= 0
            out[hit] = vmap.gather(pos[hit], m.dim)
            out[~hit] = self._parquet_vectors(m, [p for p in m.parts if not p.has_vectors], want[~hit])
            return out

        return self._read(read)

    def _parquet_vectors(self, m: Manifest, parts: Sequence[PartRecord], want: np.ndarray) -> np.ndarray:
        """The vectors of ``want`` read from the Parquet ``parts`` (unknown ids are an error)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        uniq = np.unique(want)

        def read(m: Manifest):
            found_ids, found = [], []
            for p in parts:
                if p.min_id is not None and (p.max_id < uniq[0] or p.min_id > uniq[-1]):
                    continue
                t = self._read_part(p, ["id", "embedding"])
                t = t.filter(pc.is_in(t["id"], value_set=pa.array(uniq)))
                if t.num_rows:
                    found_ids.append(t["id"].to_numpy())
                    found.append(embedding_matrix(t, self.dim))
            return found_ids, found

        found_ids, found = read(m)
        all_ids = np.concatenate(found_ids) if found_ids else np.zeros(0, np.int64)
        X = np.concatenate(found) if found else np.zeros((0, self.dim), np.float32)
        order = np.argsort(all_ids)
        all_ids, X = all_ids[order], X[order]
        pos = np.searchsorted(all_ids, want)
        pos = np.minimum(pos, max(all_ids.size - 1, 0))
        if all_ids.size == 0 or not (all_ids[pos] == want).all():
            missing = want[(all_ids.size == 0) | (all_ids[pos] != want)] if all_ids.size else want
            raise CollectionError(f"{self.root} holds no vector with id {int(missing[0])}")
        return X[pos]

    def items(self) -> ItemTable:
        """Metadata of every row as numpy columns (no embeddings), for searches and filters."""
        import pyarrow as pa

        cols = ["id", "path", "label", "offset_s", "duration_s", "content_sha256"] + ([TAGS] if self.has_tags else [])
        t = self.read_table(cols)

        def codes(col):
            enc = pa.chunked_array(col.chunks if col.num_chunks else [pa.array([], pa.string())]).dictionary_encode().combine_chunks()
            idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
            return idx, tuple(enc.dictionary.to_pylist())

        path_code, paths = codes(t["path"])
        label_code, labels = codes(t["label"])
        return ItemTable(ids=t["id"].to_numpy().astype(np.int64), path_code=path_code, paths=paths, label_code=label_code,
                         labels=labels, offset_s=t["offset_s"].to_numpy().astype(np.float64),
                         duration_s=t["duration_s"].to_numpy().astype(np.float64),
                         content_sha256=tuple(t["content_sha256"].to_pylist()),
                         **_tag_arrays(t[TAGS] if self.has_tags else None))

    def files(self) -> dict[str, StoredFile]:
        """path -> :class:`StoredFile` (content sha256, ids, label) for every stored file."""
        t = self.read_table(("path", "content_sha256", "label"))
        acc: dict[str, tuple[str, list[int], str | None]] = {}
        for i, p, sha, lab in zip(t["id"].to_pylist(), t["path"].to_pylist(), t["content_sha256"].to_pylist(),
                                  t["label"].to_pylist()):
            entry = acc.get(p)
            if entry is None:
                acc[p] = (sha, [i], lab)
            else:
                entry[1].append(i)
        return {p: StoredFile(content_sha256=s, ids=tuple(ids), label=lab) for p, (s, ids, lab) in acc.items()}

    def records(self, columns: Iterable[str] = ("path", "content_sha256", "offset_s", "duration_s", "label")) -> list[dict]:
        """Row dicts (without embeddings), ordered by id."""
        return self.read_table(list(columns)).to_pylist()

    # ------------------------------------------------------------------ writing
    def writer(self, *, wait: float | None = None, purpose: str = "write") -> "CollectionWriter":
        """A context manager holding the writer lock (waits up to ``wait`` seconds; default 10)."""
        return CollectionWriter(self, WriterLock(self.root, wait=wait, purpose=purpose))

    def append(self, rows: Rows, *, replacing: Iterable[int] = (), wait: float | None = None) -> np.ndarray:
        """Store ``rows`` as a new part (and drop ``replacing``) in one locked, atomic commit; the new ids."""
        with self.writer(wait=wait) as w:
            return w.append(rows, replacing=replacing)

    def set_labels(self, labels: dict[int, str | None], *, wait: float | None = None) -> int:
        with self.writer(wait=wait, purpose="relabel") as w:
            return w.set_labels(labels)


class CollectionWriter:
    """The lock holder's handle: each method is one atomic commit (see the module docstring)."""

    def __init__(self, collection: CollectionStore, lock: WriterLock) -> None:
        self.collection = collection
        self.lock = lock

    @property
    def root(self) -> Path:
        return self.collection.root

    @property
    def manifest(self) -> Manifest:
        return self.collection.manifest

    def __enter__(self) -> "CollectionWriter":
        self.lock.acquire()
        try:
            self.collection.manifest = read_manifest(self.root)  # what the previous writer committed
            self.collection._stamp = _stamp(self.root / MANIFEST)
            remove_temporary_files(self.root)  # left by a writer that was killed
            if self.manifest.format < FORMAT_VERSION:
                self._upgrade()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def _check(self) -> None:
        if not self.lock.held:
            raise CollectionError("a CollectionWriter is used outside its `with` block")

    # ------------------------------------------------------------------ commits
    def _commit(self, m: Manifest, *, data_changed: bool) -> Manifest:
        previous = self.manifest
        m = m.with_changes(revision=previous.revision + (1 if data_changed else 0), updated=_now(),
                           audiosim_version=__version__)
        m.validate(source=str(self.root / MANIFEST))
        write_manifest(self.root, m)
        self.collection.manifest = m
        self.collection._stamp = _stamp(self.root / MANIFEST)
        self._collect_garbage(keep=(previous, m))
        return m

    def _collect_garbage(self, *, keep: Sequence[Manifest]) -> None:
        """Remove parts and index folders no kept manifest names, and temporary files of killed writers."""
        for f in unreferenced_files(self.root, keep):
            _remove(f)
        remove_temporary_files(self.root)

    def _write_part(self, ids: np.ndarray, rows: Rows) -> PartRecord:
        import pyarrow as pa
        import pyarrow.parquet as pq


        m = self.manifest
        emb = np.ascontiguousarray(rows.embedding, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != m.dim:
            raise CollectionMismatchError(f"embedding shape {emb.shape} does not match the collection's dim {m.dim}")
        if not np.isfinite(emb).all():
            raise CollectionError("refusing to store non-finite embeddings")
        has_tags = self.collection.has_tags
        if has_tags and rows.tag_ids is None:
            raise CollectionError(f"{self.root} stores classifier tags; these rows have none (use an embedder with a classifier head)")
        columns = {
            "id": pa.array(ids, pa.int64()),
            "path": pa.array(rows.path, pa.string()),
            "content_sha256": pa.array(rows.content_sha256, pa.string()),
            "offset_s": pa.array(np.asarray(rows.offset_s, np.float64)),
            "duration_s": pa.array(np.asarray(rows.duration_s, np.float64)),
            "label": pa.array(rows.label, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), m.dim),
        }
        if has_tags:
            columns[TAGS] = tags_to_arrow(rows.tag_ids, rows.tag_scores)
        table = pa.table(columns, schema=_schema(m.dim, _metadata(m), tags=has_tags))
        name = f"{PARTS}/part-{m.revision + 1:08d}-{uuid.uuid4().hex[:12]}.parquet"
        final = self.root / name
        vec_final = self.root / vectorfile.vector_file_name(name)
        try:  # the vector file is renamed first: an orphan one (killed here) is removed by the next commit
            with atomic_path(final, sync_dir=False) as tmp, atomic_path(vec_final, sync_dir=False) as vec_tmp:
                vectorfile.write(vec_tmp, ids, emb)
                vec_digest, vec_size = sha256_file(vec_tmp), vec_tmp.stat().st_size
                pq.write_table(table, tmp, write_page_checksum=True)
                digest, size = sha256_file(tmp), tmp.stat().st_size
        except BaseException as e:
            if isinstance(e, (OSError, pa.ArrowException)):
                raise CollectionError(f"cannot write {final} ({_reason(e)}); free disk space or fix the folder's "
                                      f"permissions and run again (revision {m.revision} is intact)") from None
            raise
        _fsync_dir(final.parent)
        return PartRecord(name=name, rows=len(rows), bytes=size, sha256=digest,
                          min_id=int(ids.min()) if len(ids) else None, max_id=int(ids.max()) if len(ids) else None,
                          vec_bytes=vec_size, vec_sha256=vec_digest)

    def _parts_without(self, ids: Iterable[int]) -> tuple[list[PartRecord], int]:
        """Live parts after dropping ``ids`` (affected parts rewritten), and how many rows were dropped."""
        import pyarrow as pa
        import pyarrow.compute as pc

        doomed = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
        parts = list(self.manifest.parts)
        if doomed.size == 0:
            return parts, 0
        out, removed = [], 0
        for p in parts:
            if p.min_id is not None and not ((doomed >= p.min_id) & (doomed <= p.max_id)).any():
                out.append(p)
                continue
            table = self.collection._read(lambda m, p=p: self.collection._read_part(p, self.collection._columns(None)))
            mask = pc.is_in(table["id"], value_set=pa.array(doomed))
            n_drop = int(pc.sum(mask).as_py() or 0)
            if n_drop == 0:
                out.append(p)
                continue
            removed += n_drop
            kept = table.filter(pc.invert(mask))
            if kept.num_rows:
                out.append(self._write_part(kept["id"].to_numpy(), rows_from_table(kept, self.manifest.dim)))
        return out, removed

    def append(self, rows: Rows, *, replacing: Iterable[int] = ()) -> np.ndarray:
        """Store ``rows`` as one new part and drop the ids in ``replacing``, in one commit; the new ids."""
        self._check()
        parts, removed = self._parts_without(replacing)
        start = self.manifest.next_id
        ids = np.arange(start, start + len(rows), dtype=np.int64)
        if len(rows):
            parts.append(self._write_part(ids, rows))
        if len(rows) or removed:
            self._commit(self.manifest.with_changes(parts=tuple(parts), next_id=start + len(rows),
                                                    count=self.manifest.count + len(rows) - removed), data_changed=True)
        return ids

    def delete(self, ids: Iterable[int], *, forget: Iterable[str] = ()) -> int:
        """Drop rows by id (rewriting the affected parts); returns how many were removed.

        ``forget``: files whose every vector goes, recorded in the manifest's ``deleted`` list in the
        same commit so that later ``index`` runs leave them out (until ``undelete``).
        """
        self._check()
        parts, removed = self._parts_without(ids)
        deleted = tuple(dict.fromkeys((*self.manifest.deleted, *forget)))
        if removed:
            self._commit(self.manifest.with_changes(parts=tuple(parts), count=self.manifest.count - removed,
                                                    deleted=deleted), data_changed=True)
        return removed

    def ids_of_paths(self, paths: Iterable[str]) -> list[int]:
        """The ids of every vector of these audio files (as given, or resolved); an unknown file is an error."""
        stored = self.collection.files()
        ids, unknown = [], []
        for p in paths:
            key = p if p in stored else str(Path(p).expanduser().resolve())
            if key in stored:
                ids.extend(stored[key].ids)
            else:
                unknown.append(p)
        if unknown:
            raise CollectionError(unknown_file_message(self.root, unknown[0], stored))
        return ids

    def set_labels(self, labels: dict[int, str | None]) -> int:
        """Change the label of rows by id (rewriting the affected parts); returns how many rows changed."""
        import pyarrow as pa

        self._check()
        if not labels:
            return 0
        wanted = np.fromiter(labels, dtype=np.int64)
        parts, changed = [], 0
        for p in self.manifest.parts:
            if p.min_id is not None and not ((wanted >= p.min_id) & (wanted <= p.max_id)).any():
                parts.append(p)
                continue
            table = self.collection._read(lambda m, p=p: self.collection._read_part(p, self.collection._columns(None)))
            ids = table["id"].to_pylist()
            old = table["label"].to_pylist()
            new = [labels.get(i, lab) for i, lab in zip(ids, old)]
            n = sum(a != b for a, b in zip(old, new))
            if n == 0:
                parts.append(p)
                continue
            changed += n
            table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(new, pa.string()))
            parts.append(self._write_part(table["id"].to_numpy(), rows_from_table(table, self.manifest.dim)))
        if changed:
            self._commit(self.manifest.with_changes(parts=tuple(parts)), data_changed=True)
        return changed

    def set_fields(self, **fields) -> Manifest:
        """Change manifest fields that do not touch the stored data (index kind, post-processing, sources, ...)."""
        self._check()
        forbidden = {"parts", "count", "next_id", "revision", "embedder", "pooling", "dim", "format"} & set(fields)
        if forbidden:
            raise CollectionError(f"set_fields cannot change {sorted(forbidden)}")
        return self._commit(self.manifest.with_changes(**fields), data_changed=False)

    def write_errors(self, failures: Iterable[dict]) -> None:
        """Replace ``errors.jsonl`` with this run's per-file failures (one JSON object a line)."""

        stamp = _now()
        text = "".join(dumps_strict({"run": stamp, **f}, indent=None) + "\n" for f in failures)
        try:
            write_bytes_atomic(self.root / ERRORS_FILE, text.encode())
        except OSError as e:
            raise CollectionError(f"cannot write {self.root / ERRORS_FILE} ({_reason(e)}); free disk space or fix "
                                  "the folder's permissions (the vectors are committed)") from None

    def set_index(self, record: IndexRecord | None) -> Manifest:
        return self.set_fields(index=record)

    def replace_parts(self, parts: Sequence[PartRecord], *, count: int, data_changed: bool = True,
                      next_id: int | None = None) -> Manifest:
        """Commit a different set of already-written parts (used by repair, compaction and reembed).

        ``data_changed=False`` (compaction: the same ids, vectors and metadata in fewer parts) keeps
        the revision, so the saved index stays current. ``next_id``: the first id a later append
        takes (reembed writes parts with another collection's ids); it never moves backwards.
        """
        self._check()
        changes = dict(parts=tuple(parts), count=int(count))
        if next_id is not None:
            changes["next_id"] = max(int(next_id), self.manifest.next_id)
        return self._commit(self.manifest.with_changes(**changes), data_changed=data_changed)

    def write_part(self, ids: np.ndarray, rows: Rows) -> PartRecord:
        """Write (not commit) one part with the given ids; pair with :meth:`replace_parts`."""
        self._check()
        return self._write_part(np.asarray(ids, dtype=np.int64), rows)

    def restore_part(self, record: PartRecord, source: Path) -> PartRecord:
        """Copy ``source`` (a file holding exactly the bytes ``record`` names: size and sha256) into a new part.

        Used by repair when a part's bytes are found under another name (parts swapped or renamed).
        """

        self._check()
        name = f"{PARTS}/part-{self.manifest.revision + 1:08d}-{uuid.uuid4().hex[:12]}.parquet"
        final = self.root / name
        try:
            with atomic_path(final) as tmp:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                if tmp.stat().st_size != record.bytes or sha256_file(tmp) != record.sha256:
                    raise CorruptCollectionError(f"{source} changed while it was copied; run repair again")
        except OSError as e:
            raise CollectionError(f"cannot write {final} ({_reason(e)}); free disk space and run repair again") from None
        return PartRecord(name=name, rows=record.rows, bytes=record.bytes, sha256=record.sha256,
                          min_id=record.min_id, max_id=record.max_id)

    def ensure_vector_files(self, *, verify: bool = False) -> list[str]:
        """Give every live part a sound vector file (written from its Parquet part); the names (re)written.

        Parts recorded without one (written before vector files existed, or restored by repair)
        get one and their records are committed (``data_changed=False``: the index stays current).
        ``verify=True`` (repair) also re-hashes each recorded file and rewrites those missing or
        garbled: the bytes are a function of the part, so the record does not change.
        """
        self._check()
        m = self.manifest
        parts, written = [], []
        for p in m.parts:
            vec = self.root / vectorfile.vector_file_name(p.name)
            if p.has_vectors and (not verify or (vec.is_file() and vec.stat().st_size == p.vec_bytes
                                                 and sha256_file(vec) == p.vec_sha256)):
                parts.append(p)
                continue
            table = self.collection._read(lambda m, p=p: self.collection._read_part(p, ["id", "embedding"]))
            X = embedding_matrix(table, m.dim)
            if X.size and not np.isfinite(X).all():
                raise CorruptCollectionError(f"{self.root / p.name} holds non-finite embeddings; "
                                             f"{REPAIR.format(root=self.root)}")
            try:
                with atomic_path(vec, sync_dir=False) as tmp:
                    vectorfile.write(tmp, table["id"].to_numpy(), X)
                    digest, size = sha256_file(tmp), tmp.stat().st_size
                    if p.has_vectors and (size, digest) != (p.vec_bytes, p.vec_sha256):
                        raise CorruptCollectionError(f"{self.root / p.name} no longer matches the vector file its "
                                                     f"record names; {REPAIR.format(root=self.root)}")
            except OSError as e:
                raise CollectionError(f"cannot write {vec} ({_reason(e)}); free disk space and run again") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(vec.parent)
            written.append(vectorfile.vector_file_name(p.name))
            parts.append(p if p.has_vectors else PartRecord(**{**p.__dict__, "vec_bytes": size, "vec_sha256": digest}))
        if any(a is not b for a, b in zip(parts, m.parts)):
            self._commit(m.with_changes(parts=tuple(parts)), data_changed=False)
        return written

    def _upgrade(self) -> None:
        """Record rows, sizes, sha256 and id ranges of a format-1 collection's parts (read once)."""
        import pyarrow.parquet as pq


        parts, top = [], -1
        for p in self.manifest.parts:
            path = self.root / p.name
            try:
                ids = pq.read_table(path, columns=["id"])["id"].to_numpy()
            except FileNotFoundError:
                raise CorruptCollectionError(f"{path} is missing; {REPAIR.format(root=self.root)}") from None
            except Exception as e:
                raise CorruptCollectionError(f"{path} is unreadable ({e}); {REPAIR.format(root=self.root)}") from None
            parts.append(PartRecord(name=p.name, rows=int(ids.size), bytes=path.stat().st_size, sha256=sha256_file(path),
                                    min_id=int(ids.min()) if ids.size else None, max_id=int(ids.max()) if ids.size else None))
            top = max(top, int(ids.max()) if ids.size else -1)
        m = self.manifest.with_changes(parts=tuple(parts), count=sum(p.rows for p in parts),
                                       next_id=max(self.manifest.next_id, top + 1), format=FORMAT_VERSION)
        m.validate(source=str(self.root / MANIFEST))
        write_manifest(self.root, m)
        self.collection.manifest = m
        self.collection._stamp = _stamp(self.root / MANIFEST)


# ---------------------------------------------------------------------- the manifest file
def unknown_file_message(root: Path, path: str, stored: Iterable[str]) -> str:
    """"ROOT holds no file PATH", the stored paths closest to it, and the command that lists them all."""
    import difflib

    stored = list(stored)
    names: dict[str, list[str]] = {}
    for s in stored:
        names.setdefault(Path(s).name, []).append(s)
    close = [p for n in difflib.get_close_matches(Path(path).name, list(names), n=3, cutoff=0.6) for p in names[n]][:3]
    close = close or difflib.get_close_matches(str(path), stored, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"{root} holds no file {path!r}{hint} (`audiosim info --collection {root} --files` lists the "
            f"{len(stored)} files it holds)")


def read_manifest(root: str | Path) -> Manifest:
    """Load and validate ``root/collection.json``; every problem is a typed error naming the file."""
    return Manifest.from_dict(read_manifest_json(root), source=str(Path(root) / MANIFEST))


def read_manifest_json(root: str | Path):
    """The parsed JSON of ``root/collection.json`` (any JSON value); a :class:`ManifestError` when it is not JSON."""
    path = Path(root) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CollectionError(f"{root} is not a collection (no {MANIFEST}); create one with "
                              f"`audiosim index FOLDER --collection {root}`") from None
    except OSError as e:
        raise ManifestError(f"cannot read {path} ({_reason(e)}); fix its permissions, or run "
                            f"`audiosim repair --collection {root}`") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(f"{path} is corrupt (not JSON: {type(e).__name__}: {str(e)[:200]}); restore it from a "
                            f"backup or run `audiosim repair --collection {root}`") from None


def commit_recovered(lock: WriterLock, manifest: Manifest, *, keep: Sequence[Manifest] = ()) -> CollectionStore:
    """Write a manifest rebuilt by ``audiosim repair`` (the caller holds ``lock``) and clean up.

    Parts and index folders named neither by ``manifest`` nor by ``keep`` (the damaged manifest,
    when it could still be read, so its readers keep working) are removed, with temporary files.
    """
    if not lock.held:
        raise CollectionError("commit_recovered needs the writer lock held")
    root = lock.root
    manifest.validate(source=str(root / MANIFEST))
    write_manifest(root, manifest)
    for f in unreferenced_files(root, (manifest, *keep)):
        _remove(f)
    remove_temporary_files(root)
    return CollectionStore(root, manifest)


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Replace ``root/collection.json`` atomically (temporary file, fsync, rename, fsync of the folder)."""

    try:
        write_json_atomic(Path(root) / MANIFEST, manifest.to_dict())
    except OSError as e:
        raise CollectionError(f"cannot write {Path(root) / MANIFEST} ({_reason(e)}); free disk space or fix the "
                              "folder's permissions and run again (the previous revision is intact)") from None
    _fsync_dir(Path(root))


def _reason(e: BaseException) -> str:
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__) if isinstance(e, OSError) else str(e)


# ---------------------------------------------------------------------- files on disk
def temporary_files(root: str | Path) -> list[Path]:
    """Temporary files of writes in progress (or of writers that were killed) in the collection."""
    root = Path(root)
    found = [f for name in ROOT_FILES for f in root.glob(f".{name}.*.tmp")]
    parts = root / PARTS
    if parts.is_dir():
        found += [f for f in parts.iterdir() if TEMP_FILE.match(f.name)]
    index = root / INDEX
    if index.is_dir():
        for d in index.iterdir():
            if TEMP_FILE.match(d.name):
                found.append(d)
            elif INDEX_DIR_FILE.match(d.name) and d.is_dir() and not d.is_symlink():
                found += [f for f in d.iterdir() if TEMP_FILE.match(f.name)]
    return sorted(found)


def remove_temporary_files(root: str | Path) -> list[Path]:
    """Delete :func:`temporary_files` (only the lock holder may: they may be another writer's work in progress)."""
    found = temporary_files(root)
    for f in found:
        _remove(f)
    return found


def unreferenced_files(root: str | Path, keep: Iterable[Manifest]) -> list[Path]:
    """Parts (with their vector files) and index folders of the collection that none of the ``keep`` manifests names.

    Only names audiosim writes are considered (``parts/part-*.parquet``, ``parts/part-*.vec``, ``index/r<rev>-<hex>``);
    anything else in those folders is left alone.
    """
    root = Path(root)
    keep = list(keep)
    live_parts = {p.name for m in keep for p in m.parts}
    live_vecs = {vectorfile.vector_file_name(n) for n in live_parts}
    live_index = {m.index.dir for m in keep if m.index is not None}
    found = []
    if (root / PARTS).is_dir():
        found += [f for f in (root / PARTS).iterdir()
                  if (PART_FILE.match(f.name) and f"{PARTS}/{f.name}" not in live_parts)
                  or (VEC_FILE.match(f.name) and f"{PARTS}/{f.name}" not in live_vecs)]
    if (root / INDEX).is_dir():
        found += [f for f in (root / INDEX).iterdir()
                  if INDEX_DIR_FILE.match(f.name) and f"{INDEX}/{f.name}" not in live_index]
    return sorted(found)


def part_files(root: str | Path) -> list[Path]:
    """Every file in ``parts/`` named like a part (live, retired or orphaned), newest revision first."""
    d = Path(root) / PARTS
    if not d.is_dir():
        return []
    return sorted((f for f in d.iterdir() if PART_FILE.match(f.name) and f.is_file()),
                  key=lambda f: (part_revision(f.name), f.name), reverse=True)


def part_revision(name: str) -> int:
    """The revision a part was written for, from its name ``part-<rev>-<hex>.parquet`` (-1 when absent)."""
    m = re.match(r"^(?:parts/)?part-([0-9]+)", name)
    return int(m.group(1)) if m else -1


def _remove(f: Path) -> None:
    if f.is_dir() and not f.is_symlink():
        shutil.rmtree(f, ignore_errors=True)
    else:
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass


def _stamp(path: Path | str) -> tuple:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        return ()


_fsync_dir = fsync_dir


class _MissingPart(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# ---------------------------------------------------------------------- Parquet schema
def _metadata(m: Manifest) -> dict:
    """What a part's schema metadata records: the collection's settings (all but parts, counts, revision, index)."""
    d = m.to_dict()
    for volatile in ("parts", "count", "next_id", "revision", "index", "updated"):
        d.pop(volatile, None)
    d["audiosim_version"] = __version__
    return d


def _tags_type():
    return tags_arrow_type()


def _schema(dim: int, metadata: dict, *, tags: bool = False):
    import pyarrow as pa

    fields_ = [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("offset_s", pa.float64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("label", pa.string(), nullable=True),
        pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
    ]
    if tags:
        fields_.append(pa.field(TAGS, _tags_type(), nullable=False))
    if not metadata:
        return pa.schema(fields_)

    return pa.schema(fields_, metadata={b"audiosim": dumps_strict(metadata, indent=None, sort_keys=True).encode()})


def part_schema(m: Manifest):
    """The column names and types of every part of a collection with manifest ``m`` (no metadata)."""
    return _schema(m.dim, {}, tags=m.class_map_sha256 is not None)


def read_part_file(path: str | Path, *, columns: Sequence[str] | None = None):
    """A part file as a pyarrow Table with its Parquet page checksums verified.

    ``FileNotFoundError`` passes through (a retired part: the caller refreshes its snapshot);
    anything else that stops the read is a :class:`CorruptCollectionError` naming the file.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    fix = REPAIR.format(root=path.parent.parent)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None,
                             page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except MemoryError:
        raise CorruptCollectionError(f"{path} claims more data than fits in memory (garbled); {fix}") from None
    except Exception as e:  # ArrowInvalid, OSError (checksum), UnicodeDecodeError in a garbled footer, ...
        raise CorruptCollectionError(f"{path} is unreadable ({type(e).__name__}: {e}); {fix}") from None


def part_metadata(path: str | Path) -> dict:
    """The settings a part's schema metadata repeats (see :func:`_metadata`); a typed error when unreadable."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
        d = json.loads(meta[b"audiosim"].decode("utf-8"))
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CorruptCollectionError(f"{path} has no readable audiosim schema metadata ({type(e).__name__}: {e}); "
                                     f"{REPAIR.format(root=path.parent.parent)}") from None
    if not isinstance(d, dict):
        raise CorruptCollectionError(f"{path} has garbled audiosim schema metadata; {REPAIR.format(root=path.parent.parent)}")
    return d


def part_table_problem(table, part: PartRecord, *, expected) -> str | None:
    """Why ``table`` (read from ``part``) does not match its record and the collection's schema, or None."""
    import pyarrow.compute as pc

    for name in table.column_names:
        if expected.get_field_index(name) < 0:
            return f"has a column {name!r} that parts of this collection do not have"
        want, have = expected.field(name).type, table.schema.field(name).type
        if have != want:
            return f"has column {name!r} of type {have}, this collection stores {want}"
    if part.bytes is not None and table.num_rows != part.rows:
        return f"holds {table.num_rows} rows, the manifest says {part.rows}"
    if "id" in table.column_names and part.min_id is not None and table.num_rows:
        mm = pc.min_max(table["id"]).as_py()
        if (mm["min"], mm["max"]) != (part.min_id, part.max_id):
            return (f"holds ids {mm['min']}..{mm['max']}, the manifest says {part.min_id}..{part.max_id} "
                    "(a part of another revision or collection in its place)")
    return None


def embedding_matrix(table, dim: int) -> np.ndarray:
    """The ``embedding`` column of a pyarrow Table or RecordBatch as a float32 [n, dim] matrix."""
    col = table["embedding"]
    if hasattr(col, "combine_chunks"):
        col = col.combine_chunks()
    if len(col) == 0:
        return np.zeros((0, dim), np.float32)
    return np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def _tag_arrays(col) -> dict:
    """``{"tag_ids": ..., "tag_scores": ...}`` from a ``tags`` column (both None without one)."""
    if col is None:
        return {"tag_ids": None, "tag_scores": None}

    ids, scores = tags_from_arrow(col, n=TOP_N)
    return {"tag_ids": ids, "tag_scores": scores}


def rows_from_table(table, dim: int) -> Rows:
    return Rows(
        path=table["path"].to_pylist(),
        content_sha256=table["content_sha256"].to_pylist(),
        offset_s=table["offset_s"].to_numpy(),
        duration_s=table["duration_s"].to_numpy(),
        label=table["label"].to_pylist(),
        embedding=embedding_matrix(table, dim),
        **_tag_arrays(table[TAGS] if TAGS in table.column_names else None),
    )

"""Check and repair a collection: the use cases behind ``audiosim check`` and ``audiosim repair``.

:func:`check_collection` reads a snapshot and never writes (it takes no lock, creates no file).
It verifies, in order:

1. **the manifest** parses and validates (:meth:`audiosim.engine.store.manifest.Manifest.from_dict`);
2. **every part** it names: present; byte size and sha256 as recorded; readable with its Parquet
   page checksums; column names and types (embedding dimension included) as the collection's;
   schema metadata made by the manifest's embedder and pooling; row count and id range as
   recorded; ids unique within the part, across parts, and below ``next_id``; embeddings, offsets
   and durations finite (offsets and durations not negative); its vector file
   (:mod:`audiosim.engine.store.vectorfile`) present, of the recorded size and sha256, holding
   exactly the part's ids and vectors with sound row checksums (a part without one yet: a warning);
3. **the saved index** the manifest names: folder present; ``index.json`` readable; every file
   it lists of the recorded size and sha256; kind, metric, count, revision and post-processing
   as the manifest records them; the FAISS file loads and holds that many vectors; when the index
   is current, exactly the collection's ids, and (exact kinds) a sample of stored vectors; the
   post-processing files load and fit the dimensions;
4. **leftovers**: temporary files of an interrupted writer.

Each finding is a :class:`Problem` naming the file, what is wrong, and the fix. Severity
``error`` means the collection is damaged (``audiosim check`` exits 1); ``warning`` means a
state the next write resolves by itself (an index older than the data, temporary files). When
a writer commits during the check, the check starts again on the new snapshot.

:func:`repair_collection` holds the writer lock and:

1. removes temporary files of killed writers;
2. when ``collection.json`` is missing, not JSON or invalid, **rebuilds it from the parts on
   disk**: the settings come from the parts' schema metadata (which repeats them) and from
   whatever fields of the damaged manifest still parse; the parts are those the damaged
   manifest still lists, or else every readable part on disk, newest revision first, skipping
   any part that shares an id or a file with a newer one (a version a later commit replaced);
   ``next_id`` goes above every id found;
3. **drops every part that fails its checks** (a part whose exact bytes are found under another
   name -- parts swapped or renamed -- is restored from there instead), then writes every missing
   or garbled vector file again from its (sound) part -- a derived file: nothing is lost and the
   index stays valid;
4. **lists the audio files whose vectors were lost**: the ``path`` column of each dropped part
   when it can still be read (page checksums are per column chunk) and its ids are the part's;
   otherwise the audio files under the collection's source folders that it no longer holds
   (``lost_files_exact`` is then False: that list may include files that never indexed);
5. **rebuilds the index** (:func:`audiosim.engine.store.indexing.ensure_index` with ``force``) when
   anything changed or the index failed its checks.

It writes and removes nothing outside ``collection.json``, ``parts/``, ``index/`` and temporary
files; of the user's audio it only lists the source folders (never opening a file), so the
audio is never touched. After a repair, ``audiosim index`` of the source folders re-embeds
exactly the lost files (they are no longer stored).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from audiosim import __version__
from audiosim.engine.audio.scan import scan_folder
import audiosim.engine.store.vectorfile as vectorfile
from audiosim.engine.store.indexing import ensure_index
from audiosim.engine.store.lock import WriterLock
from audiosim.engine.store.manifest import FORMAT_VERSION, MAX_ID, Manifest, PartRecord, salvage
from audiosim.engine.store.store import (
    ERRORS_FILE,
    INDEX,
    MANIFEST,
    PARTS,
    CollectionStore,
    CollectionWriter,
    _now,
    _stamp,
    commit_recovered,
    embedding_matrix,
    part_files,
    part_metadata,
    part_revision,
    part_schema,
    part_table_problem,
    read_manifest,
    read_manifest_json,
    read_part_file,
    remove_temporary_files,
    temporary_files,
)
from audiosim.errors import CollectionError, CorruptCollectionError, VectorIndexError
from audiosim.files import sha256_file
from audiosim.indexes.base import read_sidecar, verify_files
from audiosim.indexes.kinds import load_index
from audiosim.indexes.postprocess import Postprocessor
from audiosim.indexes.vectors import l2_normalize

ERROR, WARNING = "error", "warning"
CHECK_RETRIES = 5
INDEX_SAMPLE = 32  # stored vectors compared with an exact index's own copies


@dataclass(frozen=True)
class Problem:
    """One finding of a check: the file concerned, what is wrong, and how to fix it."""

    file: str
    problem: str
    fix: str
    severity: str = ERROR

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_collection` found. ``ok``: no problem of severity ``error``."""

    collection: str
    problems: tuple[Problem, ...] = ()
    revision: int | None = None
    vectors: int | None = None
    parts: int | None = None
    index: str | None = None  # the saved index folder, when the manifest names one

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"collection": self.collection, "ok": self.ok, "revision": self.revision, "vectors": self.vectors,
                "parts": self.parts, "index": self.index, "errors": len(self.errors), "warnings": len(self.warnings),
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_collection` did."""

    collection: str
    repaired: bool  # anything was committed
    manifest_rebuilt: bool = False
    manifest_problem: str | None = None
    dropped_parts: tuple[dict, ...] = ()  # {"part", "rows", "reason"}
    restored_parts: tuple[dict, ...] = ()  # {"part", "from"}: bytes found under another name
    lost_vectors: int = 0
    lost_files: tuple[str, ...] = ()
    lost_files_exact: bool = True
    index_rebuilt: bool = False
    removed_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    revision: int | None = None
    vectors: int | None = None
    before: CheckReport | None = None
    after: CheckReport | None = None

    @property
    def ok(self) -> bool:
        return self.after is None or self.after.ok

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("before", "after")}
        d.update({k: list(v) for k, v in d.items() if isinstance(v, tuple)})
        d["ok"] = self.ok
        d["problems_before"] = [p.to_dict() for p in self.before.problems] if self.before else []
        d["problems_after"] = [p.to_dict() for p in self.after.problems] if self.after else []
        return d


# ====================================================================== check
def check_collection(root: str | Path) -> CheckReport:
    """Verify everything about a collection (see the module docstring); never writes, never locks."""
    root = Path(root)
    _require_collection(root)
    report = None
    for _ in range(CHECK_RETRIES):
        stamp = _stamp(root / MANIFEST)
        report = _check(root)
        if _stamp(root / MANIFEST) == stamp:
            return report
    return report


def _require_collection(root: Path) -> None:
    if not root.is_dir():
        raise CollectionError(f"{root} is not a folder; give the --collection directory")
    if not (root / MANIFEST).exists() and not part_files(root):
        raise CollectionError(f"{root} is not a collection (no {MANIFEST} and no parts/part-*.parquet)")


def _check(root: Path) -> CheckReport:
    repair = f"run `audiosim repair --collection {root}`"
    try:
        m = read_manifest(root)
    except CollectionError as e:
        return CheckReport(collection=str(root), problems=(
            Problem(str(root / MANIFEST), str(e), f"{repair} (it rebuilds the manifest from the parts on disk)"),))
    problems: list[Problem] = []
    odd = manifest_odd_one_out(root, m)
    if odd is not None:  # the parts agree with one another: check them against their own settings
        problems.append(Problem(str(root / MANIFEST), odd[0],
                                f"{repair} (it rebuilds the manifest from the parts; no vector is lost)"))
        m = odd[1]
    ids_by_part, sample = _check_parts(root, m, problems)
    all_ids = np.concatenate(list(ids_by_part.values())) if ids_by_part else np.zeros(0, np.int64)
    if all_ids.size and np.unique(all_ids).size != all_ids.size:
        values, counts = np.unique(all_ids, return_counts=True)
        dup = values[counts > 1]
        holders = [name for name, ids in ids_by_part.items() if np.isin(ids, dup).any()]
        problems.append(Problem(str(root / holders[-1]), f"{dup.size} ids (e.g. {int(dup[0])}) are stored in more "
                                f"than one part ({', '.join(holders)})", f"{repair} (it drops the part that repeats them)"))
    problems += _check_index(root, m, np.sort(all_ids), sample, complete=len(ids_by_part) == len(m.parts))
    for f in temporary_files(root):
        problems.append(Problem(str(f), "temporary file of an interrupted write",
                                "none needed: the next write (or `audiosim repair`) removes it", WARNING))
    return CheckReport(collection=str(root), problems=tuple(problems), revision=m.revision, vectors=m.count,
                       parts=len(m.parts), index=m.index.dir if m.index is not None else None)


def manifest_odd_one_out(root: Path, m: Manifest) -> tuple[str, Manifest] | None:
    """(why, the manifest with the parts' settings) when every listed part whose schema metadata reads records the
    same embedder and pooling and the manifest records others; None otherwise.

    Then the manifest, not the parts, is wrong (a hand edit, a bad tool): repair rebuilds it from the parts
    instead of dropping every part as "made by another embedder".
    """

    seen = {}
    for part in m.parts:
        try:
            meta = part_metadata(root / part.name)
        except (CorruptCollectionError, OSError):
            continue
        parsed = salvage({"embedder": meta.get("embedder"), "pooling": meta.get("pooling"), "format": FORMAT_VERSION})
        if "embedder" in parsed and "pooling" in parsed:
            seen[json.dumps([parsed["embedder"].to_dict(), parsed["pooling"].to_dict()], sort_keys=True)] = parsed
    if len(seen) != 1:
        return None
    parsed = seen.popitem()[1]
    if parsed["embedder"] == m.embedder and parsed["pooling"] == m.pooling:
        return None
    fixed = replace(m, embedder=parsed["embedder"], pooling=parsed["pooling"],
                    dim=parsed["pooling"].dim(parsed["embedder"].dim))
    wrong = [f"{k} {json.dumps(have.to_dict(), sort_keys=True)} (the parts: {json.dumps(want.to_dict(), sort_keys=True)})"
             for k, have, want in (("embedder", m.embedder, parsed["embedder"]), ("pooling", m.pooling, parsed["pooling"]))
             if have != want]
    return (f"records {'; '.join(wrong)}, but all {len(m.parts)} parts agree with one another: the manifest is "
            "the odd one out", fixed)


def verify_part(root: Path, m: Manifest, part: PartRecord, *, expected=None):
    """(table, problem): the part read back and verified against its record and the collection (see module doc).

    ``problem`` is None when the part is sound; ``table`` is None when it could not be read.
    """

    path = root / part.name
    if not path.is_file():
        return None, "is missing (the manifest lists it)"
    size = path.stat().st_size
    if part.bytes is not None and size != part.bytes:
        return None, f"has {size} bytes, the manifest says {part.bytes} (truncated or replaced)"
    if part.sha256 is not None and sha256_file(path) != part.sha256:
        return None, "does not match the sha256 the manifest records (garbled or replaced)"
    try:
        table = read_part_file(path)
    except CorruptCollectionError as e:
        return None, str(e).split("; run `audiosim repair")[0].replace(f"{path} ", "", 1)
    problem = part_table_problem(table, part, expected=expected if expected is not None else part_schema(m))
    if problem:
        return table, problem
    try:
        meta = part_metadata(path)
    except CorruptCollectionError:
        meta = {}
    if meta.get("embedder") not in (None, m.embedder.to_dict()) or meta.get("pooling") not in (None, m.pooling.to_dict()):
        return table, "was made by another embedder or pooling than the collection's"
    ids = table["id"].to_numpy()
    if np.unique(ids).size != ids.size:
        return table, "repeats ids within itself"
    if ids.size and int(ids.max()) >= m.next_id:
        return table, f"holds id {int(ids.max())}, not below the manifest's next_id {m.next_id} (ids would repeat)"
    X = embedding_matrix(table, m.dim)
    if X.size and not np.isfinite(X).all():
        return table, "holds non-finite embeddings"
    for col in ("offset_s", "duration_s"):
        v = table[col].to_numpy()
        if v.size and not (np.isfinite(v).all() and (v >= 0).all()):
            return table, f"holds a negative or non-finite {col}"
    if table["path"].null_count or table["content_sha256"].null_count:
        return table, "holds rows without a path or content hash"
    return table, None


def _check_parts(root: Path, m: Manifest, problems: list[Problem]) -> tuple[dict, dict]:
    """Verify every part; {part name: ids} of the sound ones and a sample {id: stored vector}."""
    repair = f"run `audiosim repair --collection {root}` (it drops the part and lists the files to re-index)"
    expected = part_schema(m)
    ids_by_part, sample = {}, {}
    per_part = max(1, INDEX_SAMPLE // max(1, len(m.parts)))
    for part in m.parts:
        table, problem = verify_part(root, m, part, expected=expected)
        if problem:
            problems.append(Problem(str(root / part.name), problem, repair))
            continue
        ids = table["id"].to_numpy().astype(np.int64)
        ids_by_part[part.name] = ids
        vec_problem = verify_vector_file(root, m, part, table)
        if vec_problem is not None:
            problems.append(Problem(str(root / vectorfile.vector_file_name(part.name)), vec_problem[0],
                                    f"run `audiosim repair --collection {root}` (it writes the file again from its part; "
                                    "nothing is lost)", vec_problem[1]))
        if ids.size and len(sample) < INDEX_SAMPLE:
            X = embedding_matrix(table, m.dim)
            for pos in np.linspace(0, ids.size - 1, num=min(per_part, ids.size)).astype(int):
                sample[int(ids[pos])] = X[pos]
    return ids_by_part, sample


def verify_vector_file(root: Path, m: Manifest, part: PartRecord, table) -> tuple[str, str] | None:
    """(problem, severity) of a sound part's vector file (:mod:`audiosim.engine.store.vectorfile`), or None.

    A part recorded without one is a warning (reads of its vectors fall back to the Parquet part
    until the next index run or repair writes it); a recorded file that is missing, of another
    size or sha256, or whose ids or vectors differ from the part's is an error.
    """
    if not part.has_vectors:
        return ("has no vector file yet: re-ranking and by-id reads decode its Parquet part", WARNING)
    path = root / vectorfile.vector_file_name(part.name)
    if not path.is_file():
        return ("is missing (the manifest records it)", ERROR)
    if path.stat().st_size != part.vec_bytes or sha256_file(path) != part.vec_sha256:
        return ("does not match the size and sha256 the manifest records (garbled or replaced)", ERROR)
    try:
        vf = vectorfile.VectorFile(path, rows=part.rows, dim=m.dim, expected_bytes=part.vec_bytes, root=root)
    except (CorruptCollectionError, OSError) as e:
        return (str(e).split("; run `audiosim repair")[0].replace(f"{path} ", "", 1), ERROR)
    if not np.array_equal(vf.ids, table["id"].to_numpy().astype(np.int64)):
        return ("holds other ids than its Parquet part", ERROR)
    if not np.array_equal(np.asarray(vf.data), embedding_matrix(table, m.dim)):
        return ("holds other vectors than its Parquet part", ERROR)
    bad = vf.verify_all()
    return None if bad is None else (bad, ERROR)


def _check_index(root: Path, m: Manifest, ids: np.ndarray, sample: dict, *, complete: bool) -> list[Problem]:

    rebuild = f"run `audiosim repair --collection {root}` (it rebuilds the index from the stored vectors)"
    rec = m.index
    if rec is None:
        if m.count:
            return [Problem(str(root / INDEX), "no saved index: every search start builds one in memory",
                            f"run `audiosim index` on a source folder or `audiosim repair --collection {root}`", WARNING)]
        return []
    d = root / rec.dir
    if not d.is_dir():
        return [Problem(str(d), "the saved index the manifest names is missing", rebuild)]
    try:
        sidecar = read_sidecar(d)
        verify_files(d, sidecar)
    except VectorIndexError as e:
        return [Problem(str(d / "index.json"), str(e), rebuild)]
    expect = {"kind": rec.kind, "metric": m.metric, "count": rec.count, "collection_revision": rec.revision,
              "postprocess": rec.postprocess}
    got = {**sidecar, "kind": (sidecar.get("build") or {}).get("requested", sidecar.get("kind"))}  # auto: what was asked
    wrong = [f"{k} {got.get(k)!r} (manifest: {v!r})" for k, v in expect.items() if got.get(k) != v]
    if wrong:
        return [Problem(str(d / "index.json"), "the sidecar disagrees with the manifest: " + ", ".join(wrong), rebuild)]
    try:
        index, _ = load_index(d, verify=False)
    except Exception as e:  # a VectorIndexError, or FAISS refusing a file whose checksum matched
        return [Problem(str(d / "faiss.index"), f"does not load ({e})", rebuild)]
    if len(index) != rec.count:
        return [Problem(str(d / "faiss.index"), f"holds {len(index)} vectors, the manifest says {rec.count}", rebuild)]
    pp = None
    if rec.postprocess:
        try:
            pp = Postprocessor.load(d)
        except Exception as e:
            return [Problem(str(d / "postprocess.npz"), f"the post-processing does not load ({type(e).__name__}: {e})",
                            rebuild)]
        if pp.spec != rec.postprocess or pp.in_dim != m.dim or pp.out_dim != index.dim:
            return [Problem(str(d / "postprocess.json"), f"post-processing {pp.spec!r} {pp.in_dim}->{pp.out_dim} does "
                            f"not fit the manifest's {rec.postprocess!r} {m.dim}->{index.dim}", rebuild)]
    elif index.dim != m.dim:
        return [Problem(str(d / "faiss.index"), f"has dim {index.dim}, the collection {m.dim}", rebuild)]
    if not m.index_fresh:
        return [Problem(str(d), f"the saved index was built for revision {rec.revision} ({rec.count} vectors); the "
                        f"collection is at revision {m.revision} ({m.count}). Searches build a current one in memory",
                        f"run `audiosim index` on a source folder, or `audiosim repair --collection {root}`", WARNING)]
    if complete and not np.array_equal(np.sort(index.ids()), ids):
        missing, extra = np.setdiff1d(ids, index.ids()).size, np.setdiff1d(index.ids(), ids).size
        return [Problem(str(d / "faiss.index"), f"the index lacks {missing} of the collection's ids and holds {extra} "
                        "it does not have", rebuild)]
    return _check_index_sample(d, index, pp, sample, rebuild)


def _check_index_sample(d: Path, index, pp, sample: dict, rebuild: str) -> list[Problem]:
    """For exact kinds: the index's copies of a sample of stored vectors equal the stored vectors as indexed."""
    if index.KIND != "flat" or not sample:
        return []

    ids = np.fromiter(sample, dtype=np.int64)
    X = np.stack([sample[i] for i in ids]).astype(np.float32)
    if pp is not None:
        X = pp.transform(X)
    if index.metric == "cosine":
        X = l2_normalize(X)
    try:
        got = index.reconstruct(ids)
    except Exception as e:
        return [Problem(str(d / "faiss.index"), f"cannot return stored vectors ({e})", rebuild)]
    if not np.allclose(got, X, rtol=1e-4, atol=1e-5):
        return [Problem(str(d / "faiss.index"), "holds vectors that differ from the stored ones", rebuild)]
    return []


# ====================================================================== repair
def repair_collection(root: str | Path, *, wait: float | None = None) -> RepairReport:
    """Bring a damaged collection back to a sound state (see the module docstring); holds the writer lock."""

    root = Path(root)
    _require_collection(root)
    with WriterLock(root, wait=wait, purpose="repair") as lock:
        before = _check(root)
        removed = [str(f) for f in remove_temporary_files(root)]
        state = _Repair(root=root, removed=removed, before=before)
        try:
            old = read_manifest(root)
        except CollectionError as e:
            state.manifest_problem = str(e)
            old = None
        odd = manifest_odd_one_out(root, old) if old is not None else None
        if odd is not None:  # never drop parts that agree with one another: rebuild the manifest from them
            state.manifest_problem = f"{root / MANIFEST} {odd[0]}"
            old = None
        if old is None:
            rebuilt = _rebuild_manifest(root, state)
            coll = commit_recovered(lock, rebuilt)
            state.manifest_rebuilt = state.changed = True
        else:
            coll = CollectionStore(root, old)
        with CollectionWriter(coll, lock) as w:
            _drop_bad_parts(w, state)
            rewritten = w.ensure_vector_files(verify=True)  # derived files: the index stays valid
            if rewritten:
                state.notes.append(f"wrote {len(rewritten)} vector files again from their parts: {', '.join(rewritten[:5])}"
                                   + (" ..." if len(rewritten) > 5 else ""))
            index_ok = not any(p.file.startswith(str(root / INDEX)) and p.severity == ERROR for p in before.problems)
            if state.changed or not index_ok or not w.manifest.index_fresh:
                _rebuild_index(w, state)
            state.changed = state.changed or bool(rewritten)
            stored = set(w.collection.files()) if state.lost_candidates or not state.lost_exact else set()
            lost = sorted(state.lost_candidates - stored)
            if not state.lost_exact:
                lost = sorted(set(lost) | _unstored_source_files(root, w.manifest, stored))
            m = w.manifest
    after = _check(root)
    return RepairReport(collection=str(root), repaired=state.changed, manifest_rebuilt=state.manifest_rebuilt,
                        manifest_problem=state.manifest_problem, dropped_parts=tuple(state.dropped),
                        restored_parts=tuple(state.restored), lost_vectors=state.lost_vectors, lost_files=tuple(lost),
                        lost_files_exact=state.lost_exact, index_rebuilt=state.index_rebuilt,
                        removed_files=tuple(state.removed), notes=tuple(state.notes), revision=m.revision,
                        vectors=m.count, before=before, after=after)


@dataclass
class _Repair:
    """What a repair run has found and done so far."""

    root: Path
    removed: list[str]
    before: CheckReport
    changed: bool = False
    manifest_rebuilt: bool = False
    manifest_problem: str | None = None
    index_rebuilt: bool = False
    dropped: list[dict] = field(default_factory=list)
    restored: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost_vectors: int = 0
    lost_candidates: set = field(default_factory=set)
    lost_exact: bool = True

    def lose(self, path: Path, *, rows: int, reason: str, id_range: tuple | None = None) -> None:
        """Record a dropped part and the files it held (read from its path column when possible)."""
        self.dropped.append({"part": f"{PARTS}/{path.name}", "rows": rows, "reason": reason})
        self.lost_vectors += rows
        self.changed = True
        paths = _readable_paths(path, id_range)
        if paths is None:
            self.lost_exact = False
        else:
            self.lost_candidates.update(paths)


def _readable_paths(path: Path, id_range: tuple | None) -> set[str] | None:
    """The files a damaged part held, from its ``path`` column, if that column (and its ids) still read back."""
    if not path.is_file():
        return None
    try:
        t = read_part_file(path, columns=["id", "path"])
        ids = t["id"].to_numpy()
        if id_range is not None and id_range[0] is not None and ids.size and (
                int(ids.min()) < id_range[0] or int(ids.max()) > id_range[1]):
            return None  # another part's content under this name: its paths are not this part's
        return set(t["path"].to_pylist())
    except (CorruptCollectionError, OSError):
        pass
    try:
        return set(read_part_file(path, columns=["path"])["path"].to_pylist())
    except (CorruptCollectionError, OSError):
        return None


def _drop_bad_parts(w: CollectionWriter, state: _Repair) -> None:
    """Verify every part of the writer's manifest; restore swapped ones by content, drop the rest, commit."""

    m = w.manifest
    expected = part_schema(m)
    by_content = None
    good: list[PartRecord] = []
    taken = np.zeros(0, np.int64)
    for part in m.parts:
        table, problem = verify_part(w.root, m, part, expected=expected)
        if problem is None:
            ids = table["id"].to_numpy().astype(np.int64)
            if np.isin(ids, taken).any():
                problem = "repeats ids another part holds"
            else:
                taken = np.concatenate([taken, ids])
                good.append(part)
                continue
        if part.sha256 is not None and part.bytes is not None:
            if by_content is None:
                by_content = {(f.stat().st_size, sha256_file(f)): f for f in reversed(part_files(w.root))}
            source = by_content.get((part.bytes, part.sha256))
            if source is not None and source.name != Path(part.name).name:
                restored = w.restore_part(part, source)
                table, again = verify_part(w.root, m, restored, expected=expected)
                ids = table["id"].to_numpy().astype(np.int64) if table is not None else None
                if again is None and not np.isin(ids, taken).any():
                    taken = np.concatenate([taken, ids])
                    good.append(restored)
                    state.restored.append({"part": part.name, "from": f"{PARTS}/{source.name}", "as": restored.name})
                    state.changed = True
                    continue
        state.lose(w.root / part.name, rows=part.rows, reason=problem, id_range=(part.min_id, part.max_id))
    if state.dropped or state.restored:
        count = sum(p.rows for p in good)
        w.replace_parts(good, count=count, data_changed=True)


def _rebuild_index(w: CollectionWriter, state: _Repair) -> None:
    had_index = w.manifest.index is not None
    if ensure_index(w, force=True) is not None:
        state.index_rebuilt = state.changed = True
    else:
        state.changed = state.changed or had_index
        state.notes.append(f"no index saved: post-processing {w.manifest.postprocess!r} needs at least 2 vectors")


def _unstored_source_files(root: Path, m: Manifest, stored: set[str]) -> set[str]:
    """Audio files under the collection's source folders that it does not hold (and that did not fail to index)."""

    failed = set()
    try:
        for line in (root / ERRORS_FILE).read_text(errors="replace").splitlines():
            try:
                failed.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                continue
    except OSError:
        pass
    found = set()
    for src in m.sources:
        if Path(src).is_dir():
            found.update(it.path for it in scan_folder(src, label_from="none").items)
    return found - stored - failed


# ---------------------------------------------------------------------- rebuilding a lost manifest
def _rebuild_manifest(root: Path, state: _Repair) -> Manifest:
    """A manifest for the readable parts on disk (see the module docstring, step 2)."""

    try:
        damaged = salvage(read_manifest_json(root))
    except CollectionError:
        damaged = {}
    listed = sorted(damaged.get("parts") or (), key=lambda p: part_revision(p.name), reverse=True)
    candidates = [(root / p.name, p) for p in listed]
    if listed and not damaged.get("rejected_parts"):
        state.notes.append(f"kept the {len(listed)} parts the damaged manifest lists")
    else:  # the list is gone or lost entries: every other readable part on disk may hold live rows
        names = {p.name for p in listed}
        candidates += [(f, None) for f in part_files(root) if f"{PARTS}/{f.name}" not in names]
        state.notes.append("rebuilt from the parts on disk (newest first, skipping versions a later commit replaced); "
                           "vectors deleted by the last commit may reappear")
    readable, top_id = [], -1
    for path, rec in candidates:
        info = _read_candidate(path, rec)
        if isinstance(info, str):
            state.lose(path, rows=rec.rows if rec else 0, reason=info,
                       id_range=(rec.min_id, rec.max_id) if rec else None)
            continue
        readable.append(info)
        top_id = max(top_id, info["max_id"])
    for f in part_files(root):  # ids in any part on disk are never handed out again
        if f not in {c[0] for c in candidates}:
            try:
                ids = read_part_file(f, columns=["id"])["id"].to_numpy()
                top_id = max(top_id, int(ids.max()) if ids.size else -1)
            except (CorruptCollectionError, OSError):
                continue
    settings = _choose_settings(readable, damaged, root)
    chosen: list[PartRecord] = []
    taken_ids, taken_paths = np.zeros(0, np.int64), set()
    for info in readable:  # newest first
        meta = info["meta"]
        if (meta.get("embedder"), meta.get("pooling")) != (settings["embedder"].to_dict(), settings["pooling"].to_dict()) \
                and meta.get("embedder") is not None:
            state.lose(info["path"], rows=info["record"].rows, reason="made by another embedder or pooling than the "
                       "collection's other parts")
            continue
        if info["dim"] != settings["pooling"].dim(settings["embedder"].dim):
            state.lose(info["path"], rows=info["record"].rows, reason=f"holds {info['dim']}-d vectors")
            continue
        if np.isin(info["ids"], taken_ids).any() or taken_paths & info["paths"]:
            if info["listed"]:
                state.lose(info["path"], rows=info["record"].rows, reason="repeats ids or files of another part")
            else:  # a version of these rows that a later commit replaced
                state.lost_candidates.update(info["paths"])
            continue
        taken_ids = np.concatenate([taken_ids, info["ids"]])
        taken_paths |= info["paths"]
        chosen.append(info["record"])
    revision = max([damaged.get("revision", 0)] + [part_revision(r.name) for r in chosen] + [0]) + 1
    next_id = max(top_id + 1, damaged.get("next_id", 0) if isinstance(damaged.get("next_id"), int) else 0)
    chosen.sort(key=lambda r: (r.min_id if r.min_id is not None else -1, r.name))
    return Manifest(parts=tuple(chosen), count=sum(r.rows for r in chosen), next_id=min(next_id, MAX_ID),
                    revision=min(revision, MAX_ID), index=None, updated=_now(), audiosim_version=__version__,
                    format=FORMAT_VERSION, **settings)


def _read_candidate(path: Path, rec: PartRecord | None) -> dict | str:
    """What a part file holds (record, ids, paths, schema metadata), or why it cannot be used."""

    if not path.is_file():
        return "is missing (the damaged manifest lists it)"
    size = path.stat().st_size
    if rec is not None and rec.bytes is not None and (size != rec.bytes or (rec.sha256 and sha256_file(path) != rec.sha256)):
        return "does not match the size and sha256 the damaged manifest records"
    try:
        table = read_part_file(path)
        meta = part_metadata(path)
    except CorruptCollectionError as e:
        return str(e).split("; run `audiosim repair")[0]
    names = table.column_names
    if not {"id", "path", "content_sha256", "offset_s", "duration_s", "label", "embedding"} <= set(names):
        return "lacks the columns of a part"
    emb_type = table.schema.field("embedding").type
    dim = getattr(emb_type, "list_size", -1)
    ids = table["id"].to_numpy().astype(np.int64)
    if ids.size == 0 or np.unique(ids).size != ids.size or int(ids.min()) < 0:
        return "holds no rows, or repeated or negative ids"
    try:
        X = embedding_matrix(table, dim)
    except Exception:
        return "holds embeddings that do not read back as vectors"
    if not np.isfinite(X).all():
        return "holds non-finite embeddings"
    record = PartRecord(name=f"{PARTS}/{path.name}", rows=int(ids.size), bytes=size, sha256=sha256_file(path),
                        min_id=int(ids.min()), max_id=int(ids.max()))
    return {"path": path, "record": record, "ids": ids, "paths": set(table["path"].to_pylist()), "meta": meta,
            "dim": dim, "max_id": int(ids.max()), "listed": rec is not None}


def _choose_settings(readable: list[dict], damaged: dict, root: Path) -> dict:
    """The collection's settings: the parts' own record (the majority by rows, its newest part), else the damaged manifest's."""
    votes = Counter()
    for info in readable:
        meta = info["meta"]
        if isinstance(meta.get("embedder"), dict) and isinstance(meta.get("pooling"), dict):
            votes[json.dumps([meta["embedder"], meta["pooling"]], sort_keys=True)] += info["record"].rows
    newest = None
    if votes:
        winner = votes.most_common(1)[0][0]
        newest = next(info["meta"] for info in readable
                      if json.dumps([info["meta"].get("embedder"), info["meta"].get("pooling")], sort_keys=True) == winner)
    from_parts = salvage({**newest, "format": 2}) if newest else {}
    keys = ("embedder", "pooling", "metric", "embedder_options", "segment_s", "segment_hop_s", "index_kind",
            "index_params", "postprocess", "sources", "class_map_sha256", "class_names", "created", "extra")
    settings = {k: from_parts[k] if k in from_parts else damaged[k] for k in keys if k in from_parts or k in damaged}
    if "embedder" not in settings or "pooling" not in settings:
        raise CorruptCollectionError(
            f"{root} cannot be rebuilt: {MANIFEST} is unreadable and no part on disk records the embedder and pooling. "
            "Index the audio again into a new --collection directory")
    settings.setdefault("metric", "cosine")
    settings["dim"] = settings["pooling"].dim(settings["embedder"].dim)
    return settings


def lost_summary(files: Iterable[str], limit: int = 20) -> list[str]:
    """At most ``limit`` file names and a count of the rest, for text output."""
    files = list(files)
    return files[:limit] + ([f"... and {len(files) - limit} more"] if len(files) > limit else [])

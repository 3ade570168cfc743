"""The typed collection manifest (``collection.json``): what a collection is, which parts hold it, which index serves it.

:class:`Manifest` is a frozen dataclass; :meth:`Manifest.from_dict` validates everything it
reads (format version, field types, part names, counts, ``next_id`` above every id) and raises
:class:`ManifestError` naming the file and the fix, so a garbled or hand-edited manifest never
turns into a ``KeyError`` later. Only :mod:`audiosim.engine.store.store` reads and writes the file;
everything else receives a :class:`Manifest`.

Fields
------
* ``embedder`` (:class:`EmbedderInfo`), ``embedder_options``: the model that made the vectors and
  how to rebuild it; ``pooling`` (:class:`PoolingSpec`); ``dim``; ``metric`` (``cosine`` or
  ``euclidean``); ``segment_s`` / ``segment_hop_s`` (``None``: one vector per file).
* ``parts``: the live Parquet parts, each with its row count, byte size, sha256 and id range, and
  the byte size and sha256 of its vector file (``vec_bytes``, ``vec_sha256``; absent for parts
  written before vector files existed, see :mod:`audiosim.engine.store.vectorfile`);
  ``count`` (rows), ``next_id`` (ids are never reused), ``revision`` (bumped by every data
  change: append, delete, relabel).
* ``index_kind`` / ``index_params``: the index the user asked for; ``postprocess``: the label-free
  post-processing spec; ``index``: the saved index (its folder and the data revision it was
  built from), or ``None``.
* ``sources``: the folders indexed into the collection; ``class_map_sha256`` and
  ``class_names``: the classifier's class map when the collection stores tags (None and empty
  otherwise); ``extra``: free-form fields of tools built on a collection (the benchmark cache
  records its dataset there).
* ``deleted``: files whose every vector was deleted (``audiosim delete``); ``audiosim index`` leaves
  them out until ``audiosim undelete`` or ``index --include-deleted``. ``label_sources``: per
  indexed folder, how its files were labelled (``label_from``, the labels ``csv`` and its
  ``column``), re-applied by later ``index`` runs of that folder.

Validation
----------
:meth:`Manifest.from_dict` refuses: a JSON value that is not an object; a format other than
1 or 2; a missing field or a field of the wrong type (booleans are not integers; NaN and
infinities are not numbers); a part name not of the form ``parts/part-*.parquet`` (so no
``..``) or listed twice; a part whose row count and id range contradict each other; a count
that differs from the parts' rows; ``next_id`` not above every recorded id; ids, counts or
revisions that are negative or beyond :data:`MAX_ID`; a ``dim`` that is not the embedder's
dimension times the pooling's parts; segments that are not positive; an index folder not of
the form ``index/r<revision>``. Each is a :class:`ManifestError` naming the file and the fix.

Recovery
--------
:func:`salvage` returns the fields of a damaged manifest (or of a part's Parquet schema
metadata, which repeats the collection's settings) that still parse one by one, so
``audiosim repair`` can rebuild a manifest from the parts on disk without losing settings.

Format 1 manifests (audiosim 0.1) are read and upgraded on the next write: their parts have no
recorded checksums (``audiosim check`` hashes them), and ``l2`` becomes ``euclidean``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from audiosim.engine.models.embedders.base import EmbedderInfo, class_names_sha256
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.store.layout import INDEX_DIR_NAME, PART_NAME
from audiosim.errors import ManifestError
from audiosim.indexes.vectors import Metric

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MAX_ID = 2**62  # ids, counts and revisions stay far inside int64
FIX = "restore it from a backup or run `audiosim repair --collection DIR`"


def _fix(source: str) -> str:
    """:data:`FIX` naming the collection folder when ``source`` is its ``collection.json``."""

    p = Path(source)
    return FIX.replace("DIR", str(p.parent)) if p.name == "collection.json" and str(p.parent) != "." else FIX


@dataclass(frozen=True)
class PartRecord:
    """One immutable Parquet part: ``name`` relative to the collection, and what it must contain."""

    name: str
    rows: int
    bytes: int | None = None  # None: a format-1 part whose size was never recorded
    sha256: str | None = None
    min_id: int | None = None
    max_id: int | None = None
    vec_bytes: int | None = None  # the part's vector file (engine/store/vectorfile.py); None: not written yet
    vec_sha256: str | None = None

    @property
    def has_vectors(self) -> bool:
        return self.vec_sha256 is not None


@dataclass(frozen=True)
class IndexRecord:
    """The saved index: its folder (relative to the collection) and the data revision it covers."""

    dir: str
    revision: int
    kind: str
    count: int
    postprocess: str | None = None
    params: dict | None = None  # the index_params it was built with (None: an index saved before they were recorded)


@dataclass(frozen=True)
class Manifest:
    embedder: EmbedderInfo
    pooling: PoolingSpec
    dim: int
    metric: str
    embedder_options: dict = field(default_factory=dict)
    segment_s: float | None = None
    segment_hop_s: float | None = None
    parts: tuple[PartRecord, ...] = ()
    count: int = 0
    next_id: int = 0
    revision: int = 0
    index_kind: str = "flat"
    index_params: dict = field(default_factory=dict)
    postprocess: str | None = None
    index: IndexRecord | None = None
    sources: tuple[str, ...] = ()
    class_map_sha256: str | None = None
    class_names: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    label_sources: dict = field(default_factory=dict)  # folder -> {"label_from", "csv", "column"}
    created: str = ""
    updated: str = ""
    audiosim_version: str = ""
    extra: dict = field(default_factory=dict)
    format: int = FORMAT_VERSION

    # ------------------------------------------------------------------ derived
    @property
    def index_fresh(self) -> bool:
        """True when the saved index was built from this revision's data with the kind and parameters asked for."""
        i = self.index
        return (i is not None and i.revision == self.revision and i.count == self.count and i.kind == self.index_kind
                and i.postprocess == self.postprocess and (i.params is None or i.params == self.index_params))

    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    def with_changes(self, **changes) -> "Manifest":
        return replace(self, **changes)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["format"] = FORMAT_VERSION
        d["embedder"] = self.embedder.to_dict()
        d["pooling"] = self.pooling.to_dict()
        d["parts"] = [asdict(p) for p in self.parts]
        d["index"] = asdict(self.index) if self.index is not None else None
        d["sources"] = list(self.sources)
        d["class_names"] = list(self.class_names)
        d["deleted"] = list(self.deleted)
        return d

    @classmethod
    def from_dict(cls, d, *, source: str = "collection.json") -> "Manifest":
        """Validate and type a manifest read from ``source`` (named in every error)."""
        fix = _fix(source)
        if not isinstance(d, dict):
            raise ManifestError(f"{source} holds a JSON {type(d).__name__}, not a manifest object; {fix}")
        fmt = d.get("format")
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt not in READABLE_FORMATS:
            raise ManifestError(f"{source}: unsupported collection format {fmt!r} (this audiosim reads "
                                f"{', '.join(map(str, READABLE_FORMATS))}); upgrade audiosim or {fix}")
        values = {}
        for name, parse in _PARSERS.items():
            if name not in d and name in REQUIRED:
                raise ManifestError(f"{source} is not a valid manifest (missing field {name!r}); {fix}")
            values[name] = _parse(name, parse, d.get(name), source)
        values["parts"] = _parse("parts", lambda v: tuple(_part(p, fmt) for p in _list(v or [])), d.get("parts"), source)
        values["extra"] = _parse("extra", lambda v: _extra(d, fmt), d.get("extra"), source)
        m = cls(**values, format=fmt)
        m.validate(source=source)
        return m

    def validate(self, *, source: str = "collection.json") -> None:
        """Cross-field checks: dims, counts, ids, segments, unique part names."""
        fix = _fix(source)
        problems = []
        if self.embedder.dim < 1 or self.embedder.sample_rate < 1:
            problems.append(f"embedder dim {self.embedder.dim} / sample rate {self.embedder.sample_rate} is not positive")
        if self.dim != self.embedder.dim * len(self.pooling.parts):
            problems.append(f"dim {self.dim} is not the embedder's {self.embedder.dim} x {len(self.pooling.parts)} poolings")
        if min(self.count, self.next_id, self.revision) < 0:
            problems.append("negative count, next_id or revision")
        if max(self.count, self.next_id, self.revision) > MAX_ID:
            problems.append(f"count, next_id or revision beyond {MAX_ID}")
        for p in self.parts:
            ids = (p.min_id, p.max_id)
            if (ids[0] is None) != (ids[1] is None):
                problems.append(f"part {p.name!r} records only one end of its id range")
            elif ids[0] is not None and (min(ids) < 0 or max(ids) >= MAX_ID or p.rows > ids[1] - ids[0] + 1 or p.rows == 0):
                problems.append(f"part {p.name!r}: {p.rows} rows cannot have ids {ids[0]}..{ids[1]}")
            if self.format >= 2 and p.bytes is not None and p.bytes < 1:
                problems.append(f"part {p.name!r} records {p.bytes} bytes")
        names = self.part_names()
        if len(set(names)) != len(names):
            problems.append("a part is listed twice")
        if self.format >= 2:
            if sum(p.rows for p in self.parts) != self.count:
                problems.append(f"count {self.count} differs from the parts' {sum(p.rows for p in self.parts)} rows")
            top = max((p.max_id for p in self.parts if p.max_id is not None), default=-1)
            if self.next_id <= top:
                problems.append(f"next_id {self.next_id} is not above the largest stored id {top} (ids would repeat)")
        if self.segment_s is not None and not self.segment_s > 0:
            problems.append(f"segment_s {self.segment_s} is not positive")
        if self.segment_hop_s is not None and (self.segment_s is None or not 0 < self.segment_hop_s <= self.segment_s):
            problems.append(f"segment_hop_s {self.segment_hop_s} is not in (0, segment_s]")
        if self.class_map_sha256 is not None:
            if not self.class_names or class_names_sha256(self.class_names) != self.class_map_sha256:
                problems.append("class_names do not match class_map_sha256 (the classifier's class map)")
        elif self.class_names:
            problems.append("class_names without a class_map_sha256")
        if self.index is not None and not INDEX_DIR_NAME.match(self.index.dir):
            problems.append(f"index folder {self.index.dir!r} is not of the form index/r<revision>")
        if problems:
            raise ManifestError(f"{source} is inconsistent: " + "; ".join(problems) + f"; {fix}")


# ---------------------------------------------------------------------- field parsers
def _parse(name: str, parse, value, source: str):
    try:
        return parse(value)
    except (KeyError, TypeError, ValueError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
    except Exception as e:  # a PoolingError or a metric error from a hand-edited file
        what = str(e)
    raise ManifestError(f"{source} is not a valid manifest (field {name!r}: {what}); {_fix(source)}")


def salvage(d) -> dict:
    """The fields of a damaged manifest object that still parse one by one (``parts``: the valid, distinct records;
    ``rejected_parts``: how many part entries did not parse).

    Used by ``audiosim repair`` on a ``collection.json`` that fails validation, and on the
    settings a part's schema metadata repeats; a value that is not an object gives ``{}``.
    """
    if not isinstance(d, dict):
        return {}
    fmt = d.get("format") if d.get("format") in READABLE_FORMATS and not isinstance(d.get("format"), bool) else FORMAT_VERSION
    out = {}
    for name, parse in _PARSERS.items():
        if name in d:
            try:
                out[name] = parse(d[name])
            except Exception:
                continue
    parts, seen, rejected = [], set(), 0
    for p in d.get("parts") if isinstance(d.get("parts"), list) else ():
        try:
            rec = _part(p, fmt)
        except Exception:
            rejected += 1
            continue
        if rec.name not in seen:
            seen.add(rec.name)
            parts.append(rec)
    if isinstance(d.get("parts"), list):
        out["parts"] = tuple(parts)
        out["rejected_parts"] = rejected
    if isinstance(d.get("extra"), dict):
        out["extra"] = dict(d["extra"])
    return out


def _embedder(v) -> EmbedderInfo:
    emb = _dict(v)
    return EmbedderInfo(name=_str(emb["name"]), version=_str(emb["version"]), sample_rate=_int(emb["sample_rate"]),
                        dim=_int(emb["dim"]), window_s=_float(emb["window_s"]), hop_s=_float(emb["hop_s"]),
                        weights_sha256=_opt(emb.get("weights_sha256"), _str))


def _pooling(v) -> PoolingSpec:
    return PoolingSpec.from_dict(_dict(v))


def _metric(v) -> str:
    return Metric.parse(_str(v))


def _index_record(v) -> IndexRecord | None:
    if v is None:
        return None
    v = _dict(v)
    return IndexRecord(dir=_str(v["dir"]), revision=_int(v["revision"]), kind=_str(v["kind"]), count=_int(v["count"]),
                       postprocess=_opt(v.get("postprocess"), _str), params=_opt(v.get("params"), _dict))


def _text(v) -> str:
    return "" if v is None else str(v)


def _str(v) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__} {v!r}")
    return v


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")
    return v


def _float(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError(f"expected a finite number, got {type(v).__name__} {v!r}")
    return float(v)


def _dict(v) -> dict:
    if not isinstance(v, dict):
        raise TypeError(f"expected an object, got {type(v).__name__}")
    return dict(v)


def _list(v) -> list:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {type(v).__name__}")
    return v


def _opt(v, parse):
    return None if v is None else parse(v)


def _part(p, fmt: int) -> PartRecord:
    if fmt == 1:  # format 1 listed bare names
        name = _str(p)
        rec = PartRecord(name=name, rows=0)
    else:
        p = _dict(p)
        rec = PartRecord(name=_str(p["name"]), rows=_int(p["rows"]), bytes=_opt(p.get("bytes"), _int),
                         sha256=_opt(p.get("sha256"), _str), min_id=_opt(p.get("min_id"), _int),
                         max_id=_opt(p.get("max_id"), _int), vec_bytes=_opt(p.get("vec_bytes"), _int),
                         vec_sha256=_opt(p.get("vec_sha256"), _str))
        if (rec.vec_bytes is None) != (rec.vec_sha256 is None) or (rec.vec_bytes is not None and rec.vec_bytes < 1):
            raise ValueError(f"part {rec.name!r} records its vector file incompletely")
        if rec.rows < 0 or (rec.min_id is not None and rec.max_id is not None and rec.min_id > rec.max_id):
            raise ValueError(f"part {rec.name!r} has an impossible row count or id range")
    if not PART_NAME.match(rec.name):
        raise ValueError(f"part name {rec.name!r} is not of the form parts/part-*.parquet")
    return rec


_PARSERS = {
    "embedder": _embedder,
    "pooling": _pooling,
    "dim": lambda v: _int(v),
    "metric": _metric,
    "embedder_options": lambda v: _dict(v or {}),
    "segment_s": lambda v: _opt(v, _float),
    "segment_hop_s": lambda v: _opt(v, _float),
    "count": lambda v: _int(v),
    "next_id": lambda v: _int(v),
    "revision": lambda v: _int(v),
    "index_kind": lambda v: _str(v or "flat"),
    "index_params": lambda v: _dict(v or {}),
    "postprocess": lambda v: _opt(v, _str),
    "index": _index_record,
    "sources": lambda v: tuple(_str(s) for s in _list(v or [])),
    "class_map_sha256": lambda v: _opt(v, _str),
    "class_names": lambda v: tuple(_str(s) for s in _list(v or [])),
    "deleted": lambda v: tuple(_str(s) for s in _list(v or [])),
    "label_sources": lambda v: _label_sources(v),
    "created": _text,
    "updated": _text,
    "audiosim_version": _text,
}
REQUIRED = ("embedder", "pooling", "dim", "metric", "count", "next_id", "revision")


def _label_sources(v) -> dict:
    out = {}
    for folder, src in _dict(v or {}).items():
        src = _dict(src)
        out[_str(folder)] = {"label_from": _str(src["label_from"]), "csv": _opt(src.get("csv"), _str),
                             "column": _str(src.get("column") or "label")}
    return out


def _extra(d: dict, fmt: int) -> dict:
    extra = _dict(d.get("extra") or {}) if fmt >= 2 else {}
    if fmt == 1:  # format 1 kept tool fields at the top level
        extra.update({k: v for k, v in d.items() if k not in {f.name for f in fields(Manifest)}})
    return extra

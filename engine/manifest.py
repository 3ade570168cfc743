"""The typed collection manifest (``collection.json``): what a collection is, which parts hold it, which index serves it.

:class:`Manifest` is a frozen dataclass; :meth:`Manifest.from_dict` validates everything it
reads (format version, field types, part names, counts, ``next_id`` above every id) and raises
:class:`ManifestError` naming the file and the fix, so a garbled or hand-edited manifest never
turns into a ``KeyError`` later. Only :mod:`audiosim.engine.store` reads and writes the file;
everything else receives a :class:`Manifest`.

Fields
------
* ``embedder`` (:class:`EmbedderInfo`), ``embedder_options``: the model that made the vectors and
  how to rebuild it; ``pooling`` (:class:`PoolingSpec`); ``dim``; ``metric`` (``cosine`` or
  ``euclidean``); ``segment_s`` / ``segment_hop_s`` (``None``: one vector per file).
* ``parts``: the live Parquet parts, each with its row count, byte size, sha256 and id range;
  ``count`` (rows), ``next_id`` (ids are never reused), ``revision`` (bumped by every data
  change: append, delete, relabel).
* ``index_kind`` / ``index_params``: the index the user asked for; ``postprocess``: the label-free
  post-processing spec; ``index``: the saved index (its folder and the data revision it was
  built from), or ``None``.
* ``sources``: the folders indexed into the collection; ``class_map_sha256``: the classifier's
  class map when the collection stores tags; ``extra``: free-form fields of tools built on a
  collection (the benchmark cache records its dataset there).

Format 1 manifests (audiosim 0.1) are read and upgraded on the next write: their parts have no
recorded checksums (``audiosim check`` hashes them), and ``l2`` becomes ``euclidean``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace

from audiosim.engine.embedders.base import EmbedderInfo
from audiosim.engine.pooling import PoolingSpec
from audiosim.errors import CollectionError

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
PART_NAME = re.compile(r"^parts/part-[0-9A-Za-z_-]+\.parquet$")
INDEX_DIR_NAME = re.compile(r"^index/r[0-9]+(-[0-9a-f]+)?$")


class ManifestError(CollectionError):
    """``collection.json`` is unreadable, of an unknown format, or inconsistent."""


@dataclass(frozen=True)
class PartRecord:
    """One immutable Parquet part: ``name`` relative to the collection, and what it must contain."""

    name: str
    rows: int
    bytes: int | None = None  # None: a format-1 part whose size was never recorded
    sha256: str | None = None
    min_id: int | None = None
    max_id: int | None = None


@dataclass(frozen=True)
class IndexRecord:
    """The saved index: its folder (relative to the collection) and the data revision it covers."""

    dir: str
    revision: int
    kind: str
    count: int
    postprocess: str | None = None


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
    created: str = ""
    updated: str = ""
    audiosim_version: str = ""
    extra: dict = field(default_factory=dict)
    format: int = FORMAT_VERSION

    # ------------------------------------------------------------------ derived
    @property
    def index_fresh(self) -> bool:
        """True when the saved index was built from this revision's data."""
        i = self.index
        return (i is not None and i.revision == self.revision and i.count == self.count and i.kind == self.index_kind
                and i.postprocess == self.postprocess)

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
        return d

    @classmethod
    def from_dict(cls, d, *, source: str = "collection.json") -> "Manifest":
        """Validate and type a manifest read from ``source`` (named in every error)."""
        fix = "restore it from a backup or run `audiosim repair --collection DIR`"
        if not isinstance(d, dict):
            raise ManifestError(f"{source} holds a JSON {type(d).__name__}, not a manifest object; {fix}")
        fmt = d.get("format")
        if fmt not in READABLE_FORMATS:
            raise ManifestError(f"{source}: unsupported collection format {fmt!r} (this audiosim reads "
                                f"{', '.join(map(str, READABLE_FORMATS))}); upgrade audiosim or {fix}")
        try:
            from audiosim.indexes.vectors import canonical_metric

            emb = d["embedder"]
            if not isinstance(emb, dict):
                raise TypeError("embedder is not an object")
            info = EmbedderInfo(name=_str(emb["name"]), version=_str(emb["version"]), sample_rate=_int(emb["sample_rate"]),
                                dim=_int(emb["dim"]), window_s=_float(emb["window_s"]), hop_s=_float(emb["hop_s"]),
                                weights_sha256=_opt(emb.get("weights_sha256"), _str))
            pooling = PoolingSpec.from_dict(_dict(d["pooling"]))
            parts = tuple(_part(p, fmt) for p in _list(d.get("parts", [])))
            idx = d.get("index")
            index = None if idx is None else IndexRecord(dir=_str(idx["dir"]), revision=_int(idx["revision"]),
                                                         kind=_str(idx["kind"]), count=_int(idx["count"]),
                                                         postprocess=_opt(idx.get("postprocess"), _str))
            m = cls(
                embedder=info, pooling=pooling, dim=_int(d["dim"]), metric=canonical_metric(_str(d["metric"])),
                embedder_options=_dict(d.get("embedder_options") or {}),
                segment_s=_opt(d.get("segment_s"), _float), segment_hop_s=_opt(d.get("segment_hop_s"), _float),
                parts=parts, count=_int(d["count"]), next_id=_int(d["next_id"]), revision=_int(d["revision"]),
                index_kind=_str(d.get("index_kind") or "flat"), index_params=_dict(d.get("index_params") or {}),
                postprocess=_opt(d.get("postprocess"), _str), index=index,
                sources=tuple(_str(s) for s in _list(d.get("sources") or [])),
                class_map_sha256=_opt(d.get("class_map_sha256"), _str),
                created=str(d.get("created", "")), updated=str(d.get("updated", "")),
                audiosim_version=str(d.get("audiosim_version", "")), extra=_extra(d, fmt), format=fmt,
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ManifestError(f"{source} is not a valid manifest ({what}); {fix}") from None
        except Exception as e:  # a PoolingError or a metric error from a hand-edited file
            raise ManifestError(f"{source} is not a valid manifest ({e}); {fix}") from None
        m.validate(source=source)
        return m

    def validate(self, *, source: str = "collection.json") -> None:
        """Cross-field checks: dims, counts, ids, segments, unique part names."""
        fix = "restore it from a backup or run `audiosim repair --collection DIR`"
        problems = []
        if self.dim != self.embedder.dim * len(self.pooling.parts):
            problems.append(f"dim {self.dim} is not the embedder's {self.embedder.dim} x {len(self.pooling.parts)} poolings")
        if min(self.count, self.next_id, self.revision) < 0:
            problems.append("negative count, next_id or revision")
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
        if self.index is not None and not INDEX_DIR_NAME.match(self.index.dir):
            problems.append(f"index folder {self.index.dir!r} is not of the form index/r<revision>")
        if problems:
            raise ManifestError(f"{source} is inconsistent: " + "; ".join(problems) + f"; {fix}")


# ---------------------------------------------------------------------- field parsers
def _str(v) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__} {v!r}")
    return v


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")
    return v


def _float(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")
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
                         max_id=_opt(p.get("max_id"), _int))
        if rec.rows < 0 or (rec.min_id is not None and rec.max_id is not None and rec.min_id > rec.max_id):
            raise ValueError(f"part {rec.name!r} has an impossible row count or id range")
    if not PART_NAME.match(rec.name):
        raise ValueError(f"part name {rec.name!r} is not of the form parts/part-*.parquet")
    return rec


def _extra(d: dict, fmt: int) -> dict:
    extra = dict(d.get("extra") or {}) if fmt >= 2 else {}
    if fmt == 1:  # format 1 kept tool fields at the top level
        extra.update({k: v for k, v in d.items() if k not in {f.name for f in fields(Manifest)}})
    return extra

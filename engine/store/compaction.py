"""Compaction: merge a collection's small parts into large ones, changing nothing else.

Every ingest flush commits one part (``--flush-every 64`` files by default), so a million clips
leave ~15,000 part files; each read opens them all. :func:`compact` rewrites runs of small parts
as few large ones:

* **What is small.** A part under half of ``target_bytes`` (default :data:`TARGET_BYTES` =
  64 MiB, ~16,000 vectors of 1024 floats). Larger parts are left as they are.
* **Groups.** Parts are taken in id order; consecutive small parts are gathered while the
  group stays within ``target_bytes`` (a large part ends a group), and every group of two or
  more parts becomes one part whose rows are the group's rows in id order. Id ranges of the new
  parts stay disjoint and tight, so reads by id skip the parts they do not need.
* **Nothing changes but the files.** Ids, vectors (bit for bit), paths, content hashes, labels,
  offsets, durations and the ``tags`` column are copied; the row count is checked against the
  manifest before each commit. Each group is one commit through
  :meth:`CollectionWriter.replace_parts` with ``data_changed=False``: the revision stays, so the
  saved index (built for that revision) stays current and nothing is re-indexed.
* **Crash-safe.** A merged part is written under a temporary name and renamed before the
  manifest names it; a run killed mid-way leaves the groups committed so far (every commit is
  complete) and an unnamed file that the next commit's clean-up removes. The parts a group
  replaced stay on disk until the next commit, so a reader holding the previous manifest can
  still read them (see :mod:`audiosim.engine.store.store`).
* **Files on disk.** The store removes a replaced part at the commit after the one that
  replaced it, so the last group's old files stay until the collection's next commit (any
  write: an index build, an ingest, a delete).
* **Automatic.** :func:`audiosim.engine.ingest.indexer.index_folder` calls :func:`maybe_compact` under
  its writer lock after embedding and before the index step (whose commit then removes the old
  files): when the collection has more than :data:`AUTO_COMPACT_PARTS` parts it compacts.
  ``audiosim compact --collection C`` compacts on demand.

Memory: one group at a time (at most ``target_bytes`` of Parquet plus its decoded rows).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.store.manifest import PartRecord
from audiosim.engine.store.store import CollectionStore, rows_from_table
from audiosim.errors import CollectionError
from audiosim.values import finite_number

TARGET_BYTES = 64 << 20
SMALL_FRACTION = 0.5  # a part under this fraction of the target is merged
AUTO_COMPACT_PARTS = 32  # index_folder compacts when a run leaves more parts than this


@dataclass(frozen=True)
class CompactionReport:
    """What :func:`compact` did (``to_dict`` gives the JSON ``audiosim compact --json`` prints)."""

    parts_before: int
    parts_after: int
    merged_parts: int  # parts rewritten
    new_parts: int  # parts they became
    rows: int  # rows rewritten
    bytes_before: int
    bytes_after: int
    seconds: float

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def plan_compaction(parts: Sequence[PartRecord], *, target_bytes: int = TARGET_BYTES) -> list[list[PartRecord]]:
    """The groups of small parts to merge (each of two or more parts, in id order); see the module docstring."""
    target_bytes = int(finite_number(target_bytes, option="target_bytes", min=1))  # nan, inf: a clear error
    small = SMALL_FRACTION * target_bytes
    ordered = sorted(parts, key=lambda p: (p.min_id if p.min_id is not None else -1, p.name))
    groups: list[list[PartRecord]] = []
    group: list[PartRecord] = []
    size = 0
    for p in ordered:
        b = p.bytes or 0
        if b >= small:
            groups.append(group)
            group, size = [], 0
            continue
        if group and size + b > target_bytes:
            groups.append(group)
            group, size = [], 0
        group.append(p)
        size += b
    groups.append(group)
    return [g for g in groups if len(g) >= 2]


def compact(writer, *, target_bytes: int = TARGET_BYTES) -> CompactionReport:
    """Merge the writer's small parts (see the module docstring); one commit per merged group."""
    import pyarrow as pa


    t0 = time.perf_counter()
    before = list(writer.manifest.parts)
    groups = plan_compaction(before, target_bytes=target_bytes)
    coll = writer.collection
    merged = rows = 0
    for group in groups:
        tables = [coll.read_part(p) for p in group]
        table = pa.concat_tables(tables).sort_by("id")
        want = sum(p.rows for p in group)
        if table.num_rows != want:
            raise CollectionError(f"compaction read {table.num_rows} rows from {len(group)} parts of {writer.root}, "
                                  f"the manifest names {want}; nothing was changed: run `audiosim repair` first")
        ids = table["id"].to_numpy()
        if ids.size > 1 and not (np.diff(ids) > 0).all():
            raise CollectionError(f"{writer.root} holds duplicate ids in parts {[p.name for p in group]}; "
                                  "nothing was changed: run `audiosim repair` first")
        new = writer.write_part(ids, rows_from_table(table, writer.manifest.dim))
        names = {p.name for p in group}
        current = list(writer.manifest.parts)
        at = min(i for i, p in enumerate(current) if p.name in names)
        parts = [p for p in current if p.name not in names]
        parts.insert(at, new)
        writer.replace_parts(parts, count=writer.manifest.count, data_changed=False)
        merged += len(group)
        rows += want
    after = list(writer.manifest.parts)
    return CompactionReport(parts_before=len(before), parts_after=len(after), merged_parts=merged,
                            new_parts=len(groups), rows=rows, bytes_before=sum(p.bytes or 0 for p in before),
                            bytes_after=sum(p.bytes or 0 for p in after), seconds=time.perf_counter() - t0)


def maybe_compact(writer, *, threshold: int = AUTO_COMPACT_PARTS,
                  target_bytes: int = TARGET_BYTES) -> CompactionReport | None:
    """:func:`compact` when the writer's collection has more than ``threshold`` parts and some can be merged."""
    parts = writer.manifest.parts
    if len(parts) <= threshold or not plan_compaction(parts, target_bytes=target_bytes):
        return None
    return compact(writer, target_bytes=target_bytes)


def compact_collection(root: str | Path, *, target_bytes: int = TARGET_BYTES, wait: float | None = None) -> CompactionReport:
    """Open the collection at ``root``, take its writer lock (waiting up to ``wait`` s) and :func:`compact` it."""

    coll = CollectionStore.open(root)
    with coll.writer(wait=wait, purpose="compact") as w:
        return compact(w, target_bytes=target_bytes)

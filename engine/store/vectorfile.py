"""Random access to stored vectors: one memory-mapped, fixed-width float32 file beside each Parquet part.

Re-ranking, ``CollectionStore.vectors(ids)``, "more like this" and exact filtered searches need the
stored float vectors of a few ids. Parquet cannot give them without decoding whole column chunks,
so every part ``parts/part-<rev>-<hex>.parquet`` has a companion ``parts/part-<rev>-<hex>.vec``
holding the same rows (a derived copy: the Parquet part stays the source of truth)::

    offset 0      magic  b"ASVEC\\x00\\x01\\x00"           8 bytes
    offset 8      dim    uint32 (little-endian)
    offset 12     0      uint32 (reserved)
    offset 16     rows   uint64
    offset 64     ids    int64[rows]        the part's ids, in the part's row order
    then          crc    uint32[rows]       zlib.crc32 of each row's float32 bytes
    offset DATA   data   float32[rows, dim] (DATA: the first multiple of 4096 after the crcs)

Integrity: the store writes the file under a temporary name, fsyncs and renames it together
with its part, and records its byte size and sha256 in the part's manifest record
(``vec_bytes``, ``vec_sha256``). The file's bytes are a pure function of the part's ids and
vectors, so rebuilding it (``audiosim repair``) gives the same bytes and the same record.
Opening checks the size, the header and the ids' range; every row is checked against its crc
the first time it is read (a per-file bitmap remembers the rows already verified), so a flipped
bit is a :class:`CorruptCollectionError` naming the file and ``audiosim repair``, never a wrong
score. ``audiosim check`` hashes the whole file and compares it with the Parquet part.

A fetch of ``k`` ids costs O(k log n): a binary search in the sorted ids of the snapshot
(:class:`VectorMap`), then one fancy-indexed read per part touched.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np

from audiosim.errors import CorruptCollectionError

MAGIC = b"ASVEC\x00\x01\x00"
HEADER = 64
ALIGN = 4096
SUFFIX = ".vec"
REPAIR = "run `audiosim repair --collection {root}` (it rebuilds the file from its Parquet part; nothing is lost)"


def vector_file_name(part_name: str) -> str:
    """``parts/part-X.parquet`` -> ``parts/part-X.vec``."""
    if not part_name.endswith(".parquet"):
        raise ValueError(f"not a part name: {part_name!r}")
    return part_name[: -len(".parquet")] + SUFFIX


def data_offset(rows: int) -> int:
    end = HEADER + 12 * int(rows)
    return -(-end // ALIGN) * ALIGN


def file_bytes(rows: int, dim: int) -> int:
    return data_offset(rows) + 4 * int(rows) * int(dim)


def row_crcs(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    return np.fromiter((zlib.crc32(r) for r in X), dtype=np.uint32, count=X.shape[0]) if X.size else np.zeros(
        X.shape[0], np.uint32)


def encode(ids: np.ndarray, X: np.ndarray) -> bytes:
    """The whole file's bytes for ``ids`` [n] and vectors ``X`` [n, dim] (used for small parts and tests)."""
    ids = np.ascontiguousarray(ids, dtype="<i8")
    X = np.ascontiguousarray(X, dtype="<f4")
    n, dim = X.shape
    head = MAGIC + struct.pack("<IIQ", dim, 0, n)
    head += b"\x00" * (HEADER - len(head))
    meta = ids.tobytes() + row_crcs(X).astype("<u4").tobytes()
    pad = b"\x00" * (data_offset(n) - HEADER - len(meta))
    return head + meta + pad + X.tobytes()


def write(path: Path, ids: np.ndarray, X: np.ndarray) -> None:
    """Write (and fsync) the file at ``path`` (the caller writes under a temporary name and renames)."""
    ids = np.ascontiguousarray(ids, dtype="<i8")
    X = np.ascontiguousarray(X, dtype="<f4")
    n, dim = X.shape
    with open(path, "wb") as f:
        head = MAGIC + struct.pack("<IIQ", dim, 0, n)
        f.write(head + b"\x00" * (HEADER - len(head)))
        f.write(ids.tobytes())
        f.write(row_crcs(X).astype("<u4").tobytes())
        f.write(b"\x00" * (data_offset(n) - HEADER - 12 * n))
        f.write(memoryview(X).cast("B"))
        f.flush()
        os.fsync(f.fileno())


class VectorFile:
    """One part's vector file, memory-mapped read-only; rows verified against their crc on first read."""

    def __init__(self, path: Path, *, rows: int, dim: int, expected_bytes: int | None, root: Path) -> None:
        self.path = Path(path)
        fix = REPAIR.format(root=root)
        size = self.path.stat().st_size  # FileNotFoundError passes through (a retired part)
        want = file_bytes(rows, dim)
        if size != want or (expected_bytes is not None and size != expected_bytes):
            raise CorruptCollectionError(f"{self.path} has {size} bytes, {rows} rows of {dim} floats need {want} "
                                         f"(truncated or replaced); {fix}")
        with open(self.path, "rb") as f:
            head = f.read(HEADER)
            meta = f.read(12 * rows)
            # a plain read-only array over the mapping: np.memmap indexes through Python code (2x slower per read)
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if rows else None
        if head[:8] != MAGIC or struct.unpack("<IIQ", head[8:24]) != (dim, 0, rows) or len(meta) != 12 * rows:
            raise CorruptCollectionError(f"{self.path} has a garbled header (not {rows} rows of {dim} floats); {fix}")
        self.ids = np.frombuffer(meta[: 8 * rows], dtype="<i8").astype(np.int64)
        self.crc = np.frombuffer(meta[8 * rows:], dtype="<u4")
        self.fix = fix
        self.rows, self.dim = int(rows), int(dim)
        self.data = (np.frombuffer(mapped, dtype="<f4", count=rows * dim, offset=data_offset(rows)).reshape(rows, dim)
                     if rows else np.zeros((0, dim), np.float32))
        self._verified = np.zeros(rows, bool)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The vectors at row positions ``rows`` (int64, in range; float32 [len(rows), dim]), each checked against its
        crc once."""
        out = self.data[rows]  # a copy; "<f4" is float32 on a little-endian machine, converted on others
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        if not self._verified[rows].all():
            self._verify(rows, out)
        return out

    def _verify(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Check the rows read for the first time against their crcs, and remember them."""
        fresh = ~self._verified[rows]
        for i in np.flatnonzero(fresh):
            if zlib.crc32(out[i]) != int(self.crc[rows[i]]):
                raise CorruptCollectionError(f"{self.path} row {int(rows[i])} (id {int(self.ids[rows[i]])}) fails its "
                                             f"checksum (garbled); {self.fix}")
        self._verified[rows[fresh]] = True

    def verify_all(self) -> str | None:
        """Why the file's rows do not match their crcs, or None (reads every row)."""
        for start in range(0, self.rows, 8192):
            block = np.asarray(self.data[start:start + 8192], dtype=np.float32)
            bad = np.flatnonzero(row_crcs(block) != self.crc[start:start + 8192])
            if bad.size:
                return f"row {start + int(bad[0])} fails its checksum"
        return None


class VectorMap:
    """id -> stored vector over the parts of one snapshot that have vector files (see the module docstring)."""

    def __init__(self, files: list[VectorFile]) -> None:
        self.files = files
        if files:
            ids = np.concatenate([f.ids for f in files])
            part = np.concatenate([np.full(f.rows, i, np.int32) for i, f in enumerate(files)])
            row = np.concatenate([np.arange(f.rows, dtype=np.int64) for f in files])
            order = np.argsort(ids, kind="stable")
            self.ids, self.part, self.row = ids[order], part[order], row[order]
        else:
            self.ids, self.part, self.row = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
        # ids first, first + 1, ... (the store hands them out so): a position is an id minus the first
        self.first = int(self.ids[0]) if self.ids.size and int(self.ids[-1]) - int(self.ids[0]) == self.ids.size - 1 else None
        # the files hold consecutive position ranges, in order (parts appended one after another): a position's file
        # is found by a binary search in their first positions and its row is the position minus that (no lookups in
        # the n-long part and row arrays, which a re-rank's few random positions would each miss in the cache)
        starts = np.cumsum([0] + [f.rows for f in files[:-1]]).astype(np.int64)
        self.starts = starts if files and (self.part == np.repeat(np.arange(len(files), dtype=np.int32),
                                                                  [f.rows for f in files])).all() and (
            self.row == np.arange(self.ids.size) - np.repeat(starts, [f.rows for f in files])).all() else None

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ``ids`` in :attr:`ids` (-1 where absent)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.ids.size == 0:
            return np.full(ids.shape, -1, np.int64)
        if self.first is not None:
            pos = ids - self.first
            return np.where((pos >= 0) & (pos < self.ids.size), pos, -1)
        pos = np.minimum(np.searchsorted(self.ids, ids), self.ids.size - 1)
        return np.where(self.ids[pos] == ids, pos, -1)

    def take(self, ids: np.ndarray, dim: int) -> np.ndarray | None:
        """The vectors of ``ids`` (int64 [k]) in that order, or None when one of them is not here (the caller
        then reads those from Parquet): :meth:`positions` and :meth:`gather` in as few steps as the common
        case -- contiguous ids, parts in id order -- takes."""
        if self.first is None or ids.size == 0:
            pos = self.positions(ids)
            return self.gather(pos, dim) if (pos >= 0).all() else None
        pos = ids - self.first
        if pos.min() < 0 or pos.max() >= self.ids.size:
            return None
        return self.gather(pos, dim)

    def gather(self, pos: np.ndarray, dim: int) -> np.ndarray:
        """The vectors at map positions ``pos`` (all >= 0), in that order (a new array)."""
        pos = np.asarray(pos, dtype=np.int64)
        if pos.size == 0:
            return np.empty((0, dim), np.float32)
        files = self.files
        if len(files) == 1:
            return files[0].read(pos if self.starts is not None else self.row[pos])
        if self.starts is not None:
            parts = np.searchsorted(self.starts, pos, side="right") - 1
            rows = pos - self.starts[parts]
        else:
            parts, rows = self.part[pos], self.row[pos]
        first = int(parts[0])
        if (parts == first).all():
            return files[first].read(rows)
        out = np.empty((pos.size, dim), np.float32)
        for i in np.unique(parts).tolist():  # one read per part touched
            sel = parts == i
            out[sel] = files[i].read(rows[sel])
        return out

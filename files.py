"""File helpers used across audiosim: content hashes, atomic writes, strict JSON, file-name slugs.

* :func:`atomic_path` is the one atomic write: a temporary file in the same folder that the
  caller fills, fsynced, renamed into place, and the folder fsynced (removed on failure);
  :func:`write_bytes_atomic`, :func:`write_json_atomic` and :func:`write_npz_atomic` use it.
* :func:`write_json_atomic` writes strict JSON (NaN and infinities become ``null``; numpy
  scalars and arrays, paths and tuples are converted) to a temporary file in the same folder,
  fsyncs it and renames it into place, so a reader never sees half a file.
* :func:`sha256_file` hashes a file in 1 MiB chunks.
* :func:`slug` turns a name (a pooling, a scorer spec) into a file-name-safe string.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

CHUNK = 1 << 20


def digests(path: str | Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Several hex digests of a file in one read."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            for h in hashes.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}


def sha256_file(path: str | Path) -> str:
    return digests(path, ("sha256",))["sha256"]


def jsonable(obj):
    """``obj`` with numpy values, paths and tuples converted and NaN/inf replaced by ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_strict(obj, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj`` (see :func:`jsonable`); never emits NaN."""
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def fsync_file(path: str | Path) -> None:
    """Flush a written file's bytes to the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a file system that cannot is let be."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, sync_dir: bool = True) -> Iterator[Path]:
    """The one atomic write: yields a temporary path (``.<name>.<hex>.tmp``, same folder) for the block to write.

    When the block succeeds the temporary file is fsynced and renamed onto ``path``, then the
    folder is fsynced (``sync_dir=False`` leaves that to a caller that renames several files);
    when it fails the temporary file is removed. A reader sees the old file or the new one, never
    half of one, also after a crash.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_json_atomic(path: str | Path, obj, *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Strict JSON (:func:`dumps_strict`) written atomically (:func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, (dumps_strict(obj, indent=indent, sort_keys=sort_keys) + "\n").encode())


def write_npz_atomic(path: str | Path, **arrays) -> Path:
    """``numpy.savez`` of ``arrays`` written atomically (:func:`write_bytes_atomic`)."""

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def is_under(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or inside it, compared by path components (``/x/esc`` is not under ``/x/es``)."""
    root = root.rstrip("/\\") or root[:1]
    if path == root:
        return True
    sep = "" if root.endswith(("/", "\\")) else os.sep
    return path.startswith(root + sep)


def slug(text: str) -> str:
    """A file-name-safe rendering of a name such as ``mu+sigma | whiten:256`` or ``knn:k=5``."""
    return re.sub(r"[^A-Za-z0-9+._=-]+", "-", text).strip("-") or "x"

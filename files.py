"""File helpers used across audiosim: content hashes, atomic writes, strict JSON, file-name slugs.

* :func:`write_json_atomic` writes strict JSON (NaN and infinities become ``null``; numpy
  scalars and arrays, paths and tuples are converted) to a temporary file in the same folder,
  fsyncs it and renames it into place, so a reader never sees half a file.
* :func:`sha256_file` hashes a file in 1 MiB chunks.
* :func:`slug` turns a name (a pooling, a scorer spec) into a file-name-safe string.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Sequence

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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj, *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Strict JSON (:func:`dumps_strict`) written atomically (:func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, (dumps_strict(obj, indent=indent, sort_keys=sort_keys) + "\n").encode())


def write_npz_atomic(path: str | Path, **arrays) -> Path:
    """``numpy.savez`` of ``arrays`` written atomically (:func:`write_bytes_atomic`)."""
    import io

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

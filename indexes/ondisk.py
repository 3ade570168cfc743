"""On-disk IVF inverted lists (FAISS ``OnDiskInvertedLists``): merge lists into one file, map it read-only.

An IVF index whose lists are larger than RAM is stored as two files: ``faiss.index`` (the
trained structure — coarse centroids, codebooks, rotations — and the list table, small) and
``lists.<hex>.ivfdata`` (every list's codes and ids). :func:`merge_lists` writes the
``.ivfdata`` file from any number of source lists (in-memory lists, shard files mapped
read-only, a previous ``.ivfdata``) without holding them in memory — the merge autofaiss and
FAISS's ``contrib.ondisk.merge_ondisk`` do. :func:`open_lists` reads ``faiss.index`` without its
lists and maps the ``.ivfdata`` named by the caller read-only (``MAP_SHARED``, ``PROT_READ``),
so the directory may be moved, a saved index is never modified by a process that searches it,
and the OS page cache, not the process, holds the lists.

FAISS ``printf``s progress while writing lists; :func:`stdout_to_stderr` keeps stdout clean
for commands that print JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError


@contextlib.contextmanager
def stdout_to_stderr():
    """Send the process's C-level stdout to stderr while FAISS writes on-disk lists."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def merge_lists(empty_index, sources: list, path: Path):
    """``empty_index`` (a trained, empty FAISS IVF index, or one wrapped in a pre-transform) with its
    lists replaced by an on-disk file at ``path`` holding every entry of ``sources`` (InvertedLists
    with the same nlist and code size), in source order within each list. Returns the index (its
    lists writable, so ids can still be removed before it is written)."""
    import faiss

    ivf = faiss.extract_index_ivf(empty_index)
    if empty_index.ntotal != 0:
        raise VectorIndexError("merge_lists needs an empty trained index")
    total = sum(int(s.compute_ntotal()) for s in sources)
    if total == 0:
        raise VectorIndexError("there is nothing to write to on-disk lists; keep an empty index in memory")
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(path))
    vec = faiss.InvertedListsPtrVector()
    for s in sources:
        vec.push_back(s)
    with stdout_to_stderr():
        n = int(lists.merge_from_multiple(vec.data(), vec.size(), False))
    ivf.replace_invlists(lists, True)
    lists.this.disown()
    ivf.ntotal = n
    empty_index.ntotal = n
    return empty_index


def read_shard(path: Path, *, io_flags: int = 0):
    """(index, its lists) of an index file whose in-file lists are mapped read-only, not read."""
    import faiss

    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | io_flags)
    return index, faiss.extract_index_ivf(index).invlists


def open_lists(index_path: Path, lists_path: Path, *, io_flags: int = 0):
    """A FAISS IVF index read from ``index_path`` whose lists are ``lists_path`` mapped read-only."""
    import faiss

    try:
        raw = faiss.read_index(str(index_path), faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY | io_flags)
    except RuntimeError as e:
        raise VectorIndexError(f"cannot read {index_path}: {e}; rebuild it with `audiosim index`") from None
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(raw).invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        raise VectorIndexError(f"{index_path} does not hold on-disk inverted lists; rebuild it with `audiosim index`")
    lists.filename = str(lists_path)
    lists.read_only = True
    try:
        lists.do_mmap()
    except RuntimeError as e:
        raise VectorIndexError(f"cannot map {lists_path}: {e}; rebuild the index with `audiosim index`") from None
    return raw


def list_ids(invlists) -> list:
    """The id arrays of every list of ``invlists`` (copies)."""
    import faiss

    out = []
    for no in range(invlists.nlist):
        size = int(invlists.list_size(no))
        if size:
            ptr = invlists.get_ids(no)
            out.append(faiss.rev_swig_ptr(ptr, size).copy().astype(np.int64))
            invlists.release_ids(no, ptr)
    return out

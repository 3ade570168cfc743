"""Checking candidate duplicate pairs by their audio: each file decoded once, prints kept within a memory budget.

:func:`check_pairs` takes the candidate pairs of distinct contents (each content: the files that
hold it; any readable one will do) and scores every pair with
:func:`audiosim.engine.search.content_match.match`. The pairs are visited in reverse
Cuthill-McKee order of their graph, so the two ends of nearby pairs are nearby contents: a
content's :class:`~audiosim.engine.search.content_match.Print` is decoded once, kept in a
least-recently-used cache of at most ``budget_bytes`` and dropped once the walk has passed it.
Decoding and matching run on ``workers`` threads (the decoders and numpy release the GIL).
A content none of whose files can be read (moved, deleted, damaged) is reported with the
decoder's reason, and its pairs are left unscored (NaN), for the caller to judge otherwise.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from audiosim.engine.search.content_match import Print, match, print_basis, read_print
from audiosim.errors import AudiosimError

DEFAULT_BUDGET_BYTES = 256 << 20  # decoded prints kept at once (5-s clips: about 1,600 of them)
CHUNK_PAIRS = 256  # pairs whose prints are decoded together, then matched together


@dataclass(frozen=True)
class Checked:
    """Per pair: content ``score`` and ``offset_s`` (NaN where a side could not be read or the two share
    too little sound to compare); ``unreadable``: content -> why none of its files could be decoded."""

    score: np.ndarray
    offset_s: np.ndarray
    unreadable: dict[int, str]
    decoded: int  # prints decoded (a content decoded twice, after it left the cache, counts twice)


class PrintCache:
    """Prints of contents (``sources[c]``: the paths holding content c), decoded on demand, least recently used dropped."""

    def __init__(self, sources: Sequence[Sequence[str]], *, budget_bytes: int, pool: ThreadPoolExecutor) -> None:
        self._sources = sources
        self._budget = int(budget_bytes)
        self._pool = pool
        self._cache: OrderedDict[int, Print] = OrderedDict()
        self._bytes = 0
        self._basis = print_basis()
        self.unreadable: dict[int, str] = {}
        self.decoded = 0

    def _read(self, c: int) -> Print | str:
        reasons = []
        for path in self._sources[c]:
            try:
                return read_print(path, basis=self._basis)
            except (AudiosimError, OSError) as e:  # the decoders' messages name the file
                reasons.append(str(e) if str(path) in str(e) else f"{path}: {e}")
        return "; ".join(reasons) or "no file"

    def load(self, contents: Sequence[int]) -> None:
        """Decode (in parallel) the prints of ``contents`` that are not cached or known unreadable."""
        todo = [c for c in dict.fromkeys(contents) if c not in self._cache and c not in self.unreadable]
        for c in contents:
            if c in self._cache:
                self._cache.move_to_end(c)
        for c, got in zip(todo, self._pool.map(self._read, todo)):
            self.decoded += 1
            if isinstance(got, str):
                self.unreadable[c] = got
                continue
            self._cache[c] = got
            self._bytes += got.nbytes
        keep = set(contents)
        for c in list(self._cache):  # oldest first; the prints this chunk needs stay
            if self._bytes <= self._budget:
                break
            if c not in keep:
                self._bytes -= self._cache.pop(c).nbytes

    def get(self, c: int) -> Print | None:
        return self._cache.get(c)


def _walk_order(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The pairs' order: by the later end's position in reverse Cuthill-McKee order (nearby pairs share contents)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    g = coo_matrix((np.ones(i.size), (i, j)), shape=(n, n)).tocsr()
    perm = reverse_cuthill_mckee(g + g.T, symmetric_mode=True)
    pos = np.empty(n, np.int64)
    pos[perm] = np.arange(n)
    return np.lexsort((np.minimum(pos[i], pos[j]), np.maximum(pos[i], pos[j])))


def check_pairs(sources: Sequence[Sequence[str]], i: np.ndarray, j: np.ndarray, *,
                budget_bytes: int = DEFAULT_BUDGET_BYTES, workers: int | None = None,
                chunk_pairs: int = CHUNK_PAIRS) -> Checked:
    """Content scores of the pairs ``(i[m], j[m])`` of contents (see the module docstring).

    ``chunk_pairs`` pairs at a time have their prints decoded together (kept even over the budget) and are matched.
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    score = np.full(i.size, np.nan)
    offset = np.full(i.size, np.nan)
    if i.size == 0:
        return Checked(score, offset, {}, 0)
    workers = int(workers or min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        cache = PrintCache(sources, budget_bytes=budget_bytes, pool=pool)
        order = _walk_order(len(sources), i, j)
        step = max(int(chunk_pairs), 1)
        for start in range(0, order.size, step):
            chunk = order[start:start + step]
            cache.load([int(c) for m in chunk for c in (i[m], j[m])])

            def one(m: int):
                a, b = cache.get(int(i[m])), cache.get(int(j[m]))
                return None if a is None or b is None else match(a, b)

            for m, got in zip(chunk, pool.map(one, chunk)):
                if got is not None:
                    score[m], offset[m] = got.score, got.offset_s
    return Checked(score, offset, dict(cache.unreadable), cache.decoded)


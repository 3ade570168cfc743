"""Filtered search that stays right: choose between exact scoring and a widened ANN search from the filter's selectivity.

A filter (label, path prefix, durations, tag, "not the query's own file") allows ``m`` of the
collection's ``n`` vectors, counted exactly from the metadata arrays (a boolean mask, no index
call). :func:`plan_filtered` then picks one of three strategies:

* :attr:`Strategy.EXACT` when ``m <= exact_max_rows`` (:data:`EXACT_MAX_ROWS`): the allowed
  vectors are gathered in one vectorised read from the parts' vector files
  (:meth:`audiosim.engine.store.store.CollectionStore.vectors`, then the post-processing) and scored
  exactly. For a few thousand rows this is faster than any ANN walk and its recall is 1. The
  searcher keeps the gathered rows of recent filters (at most :data:`GATHER_CACHE_BYTES`), so
  repeated queries with one filter pay only the matrix product.
* :attr:`Strategy.INDEX` for kinds that filter well inside the index (flat, SQ8, the IVF kinds,
  hnswlib): the allowed ids go into the search. IVF kinds widen the knob for the selectivity
  ``s = m / n``: ``nprobe / s`` cells (at most all of them), because only a fraction ``s`` of
  each visited cell counts. Exhaustive kinds need no widening, and neither does hnswlib
  (``FILTER_WIDENS = False``): its filtered walk goes on through rejected nodes until it holds
  ``ef`` allowed ones (recall@10 0.985 at ef 16 with a 20 % filter, above its unfiltered 0.95).
* :attr:`Strategy.POST` for FAISS's HNSW (``FILTER_INSIDE = False``): FAISS's filtered HNSW walk
  returns fewer than ``k`` hits, and worse ones, the harder it searches. Instead the graph is
  searched without the filter for ``c = ceil(POST_MARGIN * k / s) + k`` candidates with
  ``efSearch = max(ef_search, c)``, and the allowed ones are kept: the ``k``-th allowed
  neighbour sits at global rank about ``k / s``, so ``c`` covers it with a wide margin.

Either ANN strategy falls back only when needed: when fewer than ``k`` allowed hits come back
the candidate count / knob is multiplied by 4 and the search repeated, and past the whole
collection (or :data:`MAX_WIDENINGS`) the allowed vectors are scored exactly (at most
``exact_fallback_max`` of them). A wider search asked for by the user (a larger ``ef_search`` or
``nprobe`` on the index) only ever raises the values used here, so it never lowers recall.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from audiosim.indexes import exact

EXACT_MAX_ROWS = 8192
EXACT_FALLBACK_MAX = 200_000
POST_MARGIN = 3.0
GATHER_CACHE_BYTES = 256 << 20  # gathered allowed vectors a searcher keeps per loaded revision
MAX_WIDENINGS = 3


class Strategy(enum.Enum):
    EXACT = "exact"
    INDEX = "index"
    POST = "post"


@dataclass(frozen=True)
class FilterPlan:
    """How one filtered query is answered (see the module docstring)."""

    strategy: Strategy
    allowed: int
    total: int
    candidates: int  # results asked of the index (POST: before filtering)
    knob: int | None  # the index's knob for this search (None: its own)

    @property
    def selectivity(self) -> float:
        return self.allowed / max(1, self.total)


def plan_filtered(vindex, *, total: int, allowed: int, k: int, exact_max_rows: int = EXACT_MAX_ROWS) -> FilterPlan:
    """The strategy for ``k`` hits among ``allowed`` of ``total`` vectors in ``vindex``."""
    k = min(int(k), int(allowed))
    if allowed <= max(int(exact_max_rows), k):
        return FilterPlan(Strategy.EXACT, int(allowed), int(total), k, None)
    s = allowed / max(1, total)
    own = getattr(vindex, vindex.KNOB) if vindex.KNOB else None
    if vindex.FILTER_INSIDE:
        knob = None if own is None else (int(math.ceil(own / s)) if vindex.FILTER_WIDENS else int(own))
        return FilterPlan(Strategy.INDEX, int(allowed), int(total), k, knob)
    cand = int(min(total, math.ceil(POST_MARGIN * k / s) + k))
    return FilterPlan(Strategy.POST, int(allowed), int(total), cand, None if own is None else max(int(own), cand))


def exact_scores(vindex, fetch: Callable[[np.ndarray], np.ndarray], q: np.ndarray, allowed: np.ndarray, k: int, *,
                 prepared: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of the ``allowed`` ids (sorted) for one query ``q`` (index space): (scores, ids).

    ``prepared``: :func:`gather`'s result for ``allowed`` (kept by the caller for later queries).
    """
    X, norms = prepared if prepared is not None else gather(vindex, fetch, allowed)
    qq = vindex.prepare(q[None, :])[0]
    s, top = exact.top_k(exact.scores(X, qq, vindex.metric, norms=norms), allowed, k, vindex.metric)
    return s.astype(np.float32), top


def gather(vindex, fetch: Callable[[np.ndarray], np.ndarray], allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, norms): the allowed ids' stored vectors in index space (one read; checked finite when written)
    and their L2 norms (cosine) or squared norms (euclidean)."""
    X = np.ascontiguousarray(fetch(np.asarray(allowed, dtype=np.int64)), dtype=np.float32)
    return X, exact.row_norms(X, vindex.metric)


def search_filtered(vindex, q: np.ndarray, k: int, *, mask: np.ndarray, ids: np.ndarray, fetch,
                    exact_max_rows: int = EXACT_MAX_ROWS, exact_fallback_max: int = EXACT_FALLBACK_MAX,
                    cache: dict | None = None, cache_key=None, prepared: bool = False,
                    ) -> tuple[np.ndarray, np.ndarray, FilterPlan]:
    """Top ``k`` of one query among the rows ``mask`` allows (``ids``: every row's id, sorted): (scores, ids, plan).

    ``cache`` / ``cache_key``: where to keep the gathered allowed vectors for later queries with the
    same mask (bounded by :data:`GATHER_CACHE_BYTES`). ``prepared``: ``q`` went through the index's
    ``prepare`` already (float32, C-contiguous, unit length for cosine), so the index search skips it.
    """
    allowed = _allowed_ids(mask, ids, cache, cache_key)
    plan = plan_filtered(vindex, total=ids.size, allowed=allowed.size, k=k, exact_max_rows=exact_max_rows)
    k = plan.candidates if plan.strategy is Strategy.EXACT else min(int(k), allowed.size)
    if k == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), plan

    def exact():
        prepared = cache.get(cache_key) if cache is not None else None
        if prepared is None:
            prepared = gather(vindex, fetch, allowed)
            if cache is not None:
                _remember(cache, cache_key, prepared)
        return exact_scores(vindex, fetch, q, allowed, k, prepared=prepared)

    if plan.strategy is Strategy.EXACT:
        s, i = exact()
        return s, i, plan
    knob, cand = plan.knob, plan.candidates
    for _ in range(MAX_WIDENINGS + 1):
        if plan.strategy is Strategy.INDEX:
            s, i = _index_search(vindex, q, k, fetch=fetch, allowed=allowed, knob=knob, prepared=prepared)
            if i[-1] >= 0:  # all k found (missing ones, -1, come last)
                return s, i, plan
            keep = i >= 0
        else:
            s, i = _index_search(vindex, q, cand, fetch=fetch, allowed=None, knob=knob, prepared=prepared)
            pos = np.minimum(np.searchsorted(ids, i), ids.size - 1)
            keep = (i >= 0) & (ids[pos] == i) & mask[pos]
        if int(keep.sum()) >= k:
            return s[keep][:k], i[keep][:k], plan
        exhausted = (plan.strategy is Strategy.POST and cand >= ids.size) or (
            plan.strategy is Strategy.INDEX and (knob is None or knob >= _knob_ceiling(vindex)))
        if exhausted:
            break
        cand = min(ids.size, cand * 4)
        knob = None if knob is None else (max(knob, cand) if plan.strategy is Strategy.POST else knob * 4)
    if allowed.size <= exact_fallback_max:
        s, i = exact()
        return s, i, plan
    return s[keep][:k], i[keep][:k], plan


def _index_search(vindex, q: np.ndarray, k: int, *, fetch, allowed: np.ndarray | None, knob: int | None,
                  prepared: bool) -> tuple[np.ndarray, np.ndarray]:
    """One query's (scores [k], ids [k]) from the index (``allowed``: the read-only allowed ids, or None)."""
    if prepared:
        s, i = vindex.search_prepared(q[None, :], k, fetch=fetch, allowed=allowed, knob=knob)
    else:
        res = vindex.search(q[None, :], k, allowed_ids=allowed, fetch=fetch, knob=knob)
        s, i = res.scores, res.ids
    return s[0], i[0]


def _allowed_ids(mask: np.ndarray, ids: np.ndarray, cache: dict | None, cache_key) -> np.ndarray:
    """The ids ``mask`` allows, read-only; kept in ``cache`` per filter, so a repeated filter hands the index the
    same array (hnswlib keeps the membership set of one: :meth:`audiosim.indexes.hnswlib_index.HnswlibIndex._membership`)."""
    key = ("allowed", cache_key)
    kept = cache.get(key) if cache is not None else None
    if kept is not None:
        return kept[0]
    allowed = ids[np.flatnonzero(mask)]
    allowed.setflags(write=False)
    if cache is not None:
        _remember(cache, key, (allowed,))
    return allowed


def _remember(cache: dict, key, prepared: tuple) -> None:
    """Keep ``prepared`` under ``key``, dropping the oldest entries past :data:`GATHER_CACHE_BYTES`."""
    if sum(a.nbytes for a in prepared) > GATHER_CACHE_BYTES:
        return
    cache[key] = prepared
    while sum(a.nbytes for v in list(cache.values()) for a in v) > GATHER_CACHE_BYTES:  # list(): other threads
        cache.pop(next(iter(list(cache))), None)


def _knob_ceiling(vindex) -> int:
    """The knob value past which widening changes nothing (IVF: every cell)."""
    nlist = getattr(vindex, "nlist", None)
    return int(nlist) if nlist else 1 << 30

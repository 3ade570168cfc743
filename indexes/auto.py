"""The ``auto`` index kind: choose a kind from the data size and a memory budget, build it, tune it.

One call for the engine (autofaiss's ``build_index``, streaming)::

    index = choose_and_build(batches, n=len(coll), dim=coll.dim, metric=coll.metric,
                             memory_budget="2G", target_recall=0.95, fetch=coll.vectors)
    index.save(directory, extra={...})     # the sidecar's "build" records what happened

1. :func:`plan_index` chooses (no data needed): exact ``flat`` up to ``exact_max_n`` vectors;
   an HNSW graph up to ``graph_max_n`` -- over the full vectors (``hnsw``); where those exceed
   the budget, over the first :data:`PCA_D` principal components with an exact re-rank
   (``hnswpca``: a sixth of the memory, exact scores; when ``fetch`` is given, hnswlib is
   installed and ``dim >= 2 * PCA_D``), else over 8-bit codes (``hnswsq``); an ``hnswpca`` index
   that its tuning cannot bring to the target recall (data whose neighbours the components do not
   keep) is replaced by the next candidate when ``batches`` can be read again. Beyond
   ``graph_max_n``, IVF with
   ``nlist`` = the power of two nearest ``2 * sqrt(n)`` and the most accurate encoding whose
   resident memory fits ``memory_budget``: float vectors (``ivf``), 8-bit scalar codes
   (``ivfsq8``), else product quantisation (``ivfpq``) with the largest ``m`` that fits
   (``dim / 4`` down to ``dim / 64``; ``opq=True`` adds a learnt rotation — off by default:
   on YAMNet embeddings it cost minutes of training at 1024-d and lowered recall). A kind with
   approximate scores re-ranks its top candidates exactly when ``fetch`` is given (``rerank``:
   5 x k for PQ, 2 x k for SQ8). When nothing fits and a ``directory`` is given, IVF-PQ lists
   go on disk (only the centroids and codebooks count against the budget); otherwise a typed
   error names the memory needed.
2. A sample of the data (:func:`~audiosim.indexes.streaming.sample_rows`, or ``sample=``) is
   split into ``queries`` held-out query rows and training rows (``plan.train_rows``).
3. :func:`~audiosim.indexes.streaming.build` adds every batch **except the held-out rows** (on
   disk if planned) while an :class:`~audiosim.indexes.groundtruth.ExactTopK` collects the
   queries' exact neighbours among the same rows. The held-out rows are then fresh queries: the
   index has never seen them, as it never sees a user's query (a query that is in the index finds
   its own neighbourhood through itself, which made the recall measured on corpus rows 0.977
   where fresh queries got 0.939).
4. :func:`tune` sets the search knob (``nprobe`` / ``ef_search``) to the smallest value whose
   recall@k on the held-out queries reaches ``target_recall`` — judged on the one-sided 90 %
   lower confidence bound of the mean over queries, so it holds on unseen queries (doubling,
   then bisection); if none does, it doubles ``rerank`` (up to 8x) and tries again, and at
   worst keeps the best setting with ``target_met: false``. Then the held-out rows are added.

The sidecar's ``build`` records: ``requested`` ("auto"), ``kind``, ``reason``,
``memory_budget``, ``estimated_bytes``, ``memory_bytes``, ``target_recall``,
``measured_recall`` and ``fresh_query_recall`` (the same: the mean over the held-out queries, none of
them in the index), ``recall_lower_90``, ``target_met``, ``tuned_on``,
``k``, ``queries``, ``knob``/``value``, ``rerank`` (> 0: searches need ``fetch``),
``train_rows``, ``ondisk``, ``curve`` ([value, rerank, recall, lower bound] tried) and
``seconds`` per phase. :func:`tune` also works on any index the caller built.
"""

from __future__ import annotations

import importlib.util
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import Fetch, VectorIndex
from audiosim.indexes.groundtruth import ExactTopK, recalls_at_k
from audiosim.indexes.kinds import AUTO, index_class, make_index
from audiosim.indexes.streaming import Batches, build, sample_rows
from audiosim.indexes.vectors import Metric

DEFAULT_TARGET_RECALL = 0.95
DEFAULT_MEMORY_BUDGET = 2 << 30
EXACT_MAX_N = 20_000
GRAPH_MAX_N = 100_000
QUERIES = 500
MAX_TRAIN_ROWS = 120_000
PQ_RERANK = 5  # 1M x 1024 YAMNet-like, IVF-PQ256 nprobe 8: recall@10 0.962 at 5 x k, 0.964 at 10 x k, half the rows read
SQ_RERANK = 2
PCA_D = 128  # components of the hnswpca kind auto builds
PCA_RERANK = 2
Z_90 = 1.2816  # one-sided 90 % normal quantile
GPU_MAX_PQ_M = 64  # FAISS GPU IVF-PQ takes at most 96 sub-quantisers (and shared memory limits bind earlier)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: float | str) -> int:
    """Bytes from ``2G``, ``512M``, ``1.5GiB``, ``100k`` (binary multiples) or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise VectorIndexError(f"a memory budget must be positive, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(value).lower())
    if not m or float(m.group(1)) <= 0:
        raise VectorIndexError(f"cannot read the memory budget {value!r}; write it like 512M, 2G or 1.5GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class IndexPlan:
    """A kind and its construction parameters, chosen before seeing the data."""

    kind: str
    params: dict = field(default_factory=dict)
    ondisk: bool = False
    train_rows: int = 0
    memory_bytes: int = 0
    reason: str = ""

    def make(self, *, dim: int, metric: str, device: str = "cpu") -> VectorIndex:
        return make_index(self.kind, dim=dim, metric=metric, device=device, **self.params)

    def to_dict(self) -> dict:
        return asdict(self)


def ivf_nlist(n: int) -> int:
    """The power of two nearest 2 * sqrt(n), so each cell holds about sqrt(n) / 2 vectors; at most n / 39."""
    nlist = 2 ** max(0, round(math.log2(max(1.0, 2 * math.sqrt(n)))))
    while nlist > 1 and nlist * 39 > n:
        nlist //= 2
    return int(nlist)


def pq_m_choices(dim: int) -> list[int]:
    """Sub-quantiser counts for IVF-PQ, most accurate first: divisors of dim from dim / 4 down to dim / 64 (>= 1)."""
    out = [dim // s for s in (4, 8, 16, 32, 64) if dim % s == 0 and dim // s >= 1]
    return out or [1]


def plan_index(n: int, dim: int, *, memory_budget: int | str = DEFAULT_MEMORY_BUDGET, metric: str = "cosine",
               rerank_ok: bool = False, ondisk_ok: bool = False, exact_max_n: int = EXACT_MAX_N,
               graph_max_n: int = GRAPH_MAX_N, opq: bool = False, gpu: bool = False, pca_graph: bool = True) -> IndexPlan:
    """The first candidate (see the module docstring) whose estimated resident memory fits ``memory_budget``.

    ``gpu=True`` keeps to kinds FAISS searches on a GPU (no graphs, no flat SQ8; PQ with m <= 64).
    ``pca_graph=False`` leaves out the ``hnswpca`` kind (which needs ``rerank_ok``, hnswlib, and
    ``dim >= 2 * PCA_D``)."""
    budget = parse_bytes(memory_budget)
    metric = Metric.parse(metric)
    n, dim = int(n), int(dim)
    if n < 1 or dim < 1:
        raise VectorIndexError(f"cannot plan an index for n={n} vectors of dim {dim}")
    nlist = ivf_nlist(n)
    train = int(min(n, max(64 * nlist, 20_000), MAX_TRAIN_ROWS))
    sq_rr = {"rerank": SQ_RERANK} if rerank_ok else {}
    pq_rr = {"rerank": PQ_RERANK} if rerank_ok else {}
    cands: list[tuple[str, dict, bool, int, str]] = []
    if n <= exact_max_n:
        cands += [("flat", {}, False, 0, f"{n} <= {exact_max_n} vectors: exact search is fast enough"),
                  ("sq8", sq_rr, False, min(n, 20_000), "exact scan of 8-bit codes (float vectors exceed the budget)")]
    elif n <= graph_max_n:
        cands.append(("hnsw", {"m": 32}, False, 0, f"{n} <= {graph_max_n} vectors: HNSW graph"))
        if pca_graph and rerank_ok and dim >= 2 * PCA_D and _has_hnswlib():
            cands.append(("hnswpca", {"m": 16, "d": PCA_D, "rerank": PCA_RERANK}, False, min(n, 25_000),
                          f"{n} <= {graph_max_n} vectors of dim {dim}: HNSW over {PCA_D} principal components, "
                          "candidates re-ranked exactly (float vectors exceed the budget)"))
        cands += [("hnswsq", {"m": 32, **sq_rr}, False, min(n, 20_000), "HNSW over 8-bit codes (floats exceed the budget)")]
    ivf = {"nlist": nlist, "niter": 10}
    cands += [("ivf", ivf, False, train, f"IVF-Flat, nlist={nlist}: float vectors fit the budget"),
              ("ivfsq8", {**ivf, **sq_rr}, False, train, f"IVF-SQ8, nlist={nlist}: 8-bit codes fit the budget")]
    cands += [("ivfpq", {**ivf, "m": m, "opq": opq, **pq_rr}, False, train,
               f"IVF-PQ{m}{' with OPQ' if opq else ''}, nlist={nlist}: the largest PQ code that fits the budget")
              for m in pq_m_choices(dim)]
    if ondisk_ok:
        m = pq_m_choices(dim)[min(1, len(pq_m_choices(dim)) - 1)]
        cands.append(("ivfpq", {**ivf, "m": m, "opq": opq, **pq_rr}, True, train,
                      f"IVF-PQ{m}, nlist={nlist}, lists on disk: no in-memory index fits the budget"))
    if gpu:
        cands = [c for c in cands if index_class(c[0]).GPU and c[1].get("m", 0) <= GPU_MAX_PQ_M and not c[2]]
    smallest = None
    for kind, params, ondisk, rows, reason in cands:
        need = make_index(kind, dim=dim, metric=metric, **params).estimate_bytes(n, ondisk=ondisk)
        smallest = need if smallest is None else min(smallest, need)
        if need <= budget:
            return IndexPlan(kind=kind, params=params, ondisk=ondisk, train_rows=rows, memory_bytes=need,
                             reason=f"{reason} ({_fmt(need)} <= budget {_fmt(budget)})")
    hint = "" if ondisk_ok else ", or give a directory so IVF lists can stay on disk"
    raise VectorIndexError(f"no index of {n} vectors of dim {dim} fits a memory budget of {_fmt(budget)} "
                           f"(the smallest needs {_fmt(smallest)}); raise --memory-budget{hint}")


def _has_hnswlib() -> bool:
    """Whether the optional hnswlib package (the ``hnswpca`` kind's graph) is installed."""
    return importlib.util.find_spec("hnswlib") is not None


def _fmt(b: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= size:
            return f"{b / size:.1f}{unit}"
    return f"{b}B"


# ---------------------------------------------------------------------- tuning
@dataclass(frozen=True)
class TuneResult:
    """The setting chosen: ``recall`` is the mean over the queries, ``recall_lower`` its 90 % lower bound."""

    knob: str | None
    value: int | None
    rerank: int
    recall: float
    recall_lower: float
    target_met: bool
    curve: tuple = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "curve": [list(c) for c in self.curve]}


def measure_recall(index: VectorIndex, queries: np.ndarray, truth: ExactTopK | tuple, *, k: int = 10,
                   fetch: Fetch | None = None, rerank: int | None = None, query_ids: np.ndarray | None = None) -> float:
    """recall@k of ``index`` on ``queries`` against exact neighbours ``truth`` (ties count; own ids excluded)."""
    r = query_recalls(index, queries, truth, k=k, fetch=fetch, rerank=rerank, query_ids=query_ids)
    return float(r.mean()) if r.size else 1.0


def lower_bound(recalls: np.ndarray, *, z: float = Z_90) -> float:
    """One-sided lower confidence bound of the mean recall (normal approximation over queries)."""
    if recalls.size < 2:
        return float(recalls.mean()) if recalls.size else 1.0
    return float(recalls.mean() - z * recalls.std(ddof=1) / np.sqrt(recalls.size))


def query_recalls(index: VectorIndex, queries: np.ndarray, truth: ExactTopK | tuple, *, k: int = 10,
                  fetch: Fetch | None = None, rerank: int | None = None,
                  query_ids: np.ndarray | None = None) -> np.ndarray:
    """Per-query recall@k (see :func:`audiosim.indexes.groundtruth.recalls_at_k`)."""
    t_scores, t_ids = truth.result() if isinstance(truth, ExactTopK) else truth
    r = index.rerank if rerank is None else rerank
    extra = 0 if query_ids is None else 1
    res = index.search(queries, k + extra, fetch=fetch if r else None, rerank=r)
    found = res.ids
    if query_ids is not None:
        qid = np.asarray(query_ids, dtype=np.int64).reshape(-1, 1)
        rows = []
        for row, own in zip(found, qid[:, 0]):
            kept = row[row != own][:k]
            rows.append(np.pad(kept, (0, k - kept.size), constant_values=-1))
        found = np.stack(rows) if rows else found[:, :k]
    return recalls_at_k(found, t_scores, t_ids, k, metric=index.metric)


def tune(index: VectorIndex, queries: np.ndarray, truth: ExactTopK | tuple, *,
         target_recall: float = DEFAULT_TARGET_RECALL, k: int = 10, fetch: Fetch | None = None,
         query_ids: np.ndarray | None = None, rerank_doublings: int = 3, bisect_steps: int = 6) -> TuneResult:
    """Set ``index``'s knob (and, if needed, its rerank factor) to the cheapest setting reaching ``target_recall``.

    "Reaching" is judged on the one-sided 90 % lower confidence bound of the mean recall over
    the queries, so the setting holds on queries the tuning did not see."""
    if not 0 < target_recall <= 1:
        raise VectorIndexError(f"target recall must be in (0, 1], got {target_recall}")
    if fetch is None:
        index.rerank = 0
    reranks = [index.rerank] if not index.rerank else [index.rerank * 2 ** i for i in range(rerank_doublings + 1)]
    values: list = index.knob_values(k) or [None]
    curve: list[tuple] = []
    best = None

    def measure(v, r) -> tuple[float, float]:
        if v is not None:
            index.set_knob(v)
        recalls = query_recalls(index, queries, truth, k=k, fetch=fetch, rerank=r, query_ids=query_ids)
        rec = (float(recalls.mean()) if recalls.size else 1.0, lower_bound(recalls))
        curve.append((v, r, round(rec[0], 5), round(rec[1], 5)))
        return rec

    for r in reranks:
        lo = None
        for v in values:
            rec = measure(v, r)
            if best is None or rec[1] > best[2][1] + 1e-12:
                best = (v, r, rec)
            if rec[1] >= target_recall:
                hi, hi_rec = v, rec
                steps = 0
                while v is not None and lo is not None and hi - lo > 1 and steps < bisect_steps:
                    mid = (lo + hi) // 2
                    mid_rec = measure(mid, r)
                    steps += 1
                    if mid_rec[1] >= target_recall:
                        hi, hi_rec = mid, mid_rec
                    else:
                        lo = mid
                return _settle(index, hi, r, hi_rec, True, curve)
            lo = v
    v, r, rec = best
    return _settle(index, v, r, rec, False, curve)


def _without(batches: Batches, drop: np.ndarray) -> Batches:
    """``batches`` without the rows whose ids are in the sorted array ``drop``."""
    for ids, x in batches:
        ids = np.asarray(ids, dtype=np.int64)
        keep = ~np.isin(ids, drop, assume_unique=False)
        if keep.all():
            yield ids, x
        elif keep.any():
            yield ids[keep], np.asarray(x)[keep]


def _settle(index: VectorIndex, value, rerank: int, recall: tuple[float, float], met: bool, curve: list) -> TuneResult:
    if value is not None:
        index.set_knob(value)
    index.rerank = int(rerank)
    return TuneResult(knob=index.KNOB, value=value, rerank=int(rerank), recall=float(recall[0]),
                      recall_lower=float(recall[1]), target_met=met, curve=tuple(curve))


# ---------------------------------------------------------------------- the one call
def choose_and_build(batches: Batches | Callable[[], Batches], *, n: int, dim: int, metric: str = "cosine",
                     memory_budget: int | str = DEFAULT_MEMORY_BUDGET, target_recall: float = DEFAULT_TARGET_RECALL,
                     fetch: Fetch | None = None, sample: tuple[np.ndarray, np.ndarray] | None = None,
                     directory: str | Path | None = None, k: int = 10, queries: int = QUERIES, seed: int = 0,
                     device: str = "cpu", progress: Callable[[int], None] | None = None,
                     **plan_options) -> VectorIndex:
    """Choose, train, fill and tune an index for ``n`` vectors of ``dim`` (see the module docstring).

    ``batches``: ``(ids, vectors)`` batches of the whole collection — a callable returning a fresh
    iterator (two passes when ``sample`` is not given), or an iterable (one pass; then ``sample``,
    a uniform ``(ids, vectors)`` sample of the data, is required for kinds that train or tune).
    ``fetch(ids) -> float32[len(ids), dim]`` returns stored vectors for exact re-ranking; without it
    compressed kinds return approximate scores. ``directory`` allows on-disk IVF lists (written
    there; save the index to the same directory). ``plan_options`` go to :func:`plan_index`.
    """
    t0 = time.perf_counter()
    budget = parse_bytes(memory_budget)
    plan = plan_index(n, dim, memory_budget=budget, metric=metric, rerank_ok=fetch is not None,
                      ondisk_ok=directory is not None and device == "cpu", gpu=device == "gpu", **plan_options)
    index = plan.make(dim=dim, metric=metric, device=device)
    info = {"requested": AUTO, "kind": plan.kind, "reason": plan.reason, "memory_budget": budget,
            "estimated_bytes": plan.memory_bytes, "target_recall": float(target_recall), "k": int(k),
            "ondisk": plan.ondisk, "train_rows": 0, "queries": 0}
    seconds = {}

    def fresh() -> Batches:
        return batches() if callable(batches) else batches

    tuned = index.KNOB is not None or index.TRAINED
    q_ids = q_x = truth = None
    if tuned:
        if sample is None:
            if not callable(batches):
                raise VectorIndexError("pass sample=(ids, vectors) drawn from the data, or batches as a callable "
                                       "returning a fresh iterator (the sample takes one extra pass)")
            sample = sample_rows(fresh(), plan.train_rows + min(queries, max(1, n // 10)), seed=seed)
        s_ids, s_x = np.asarray(sample[0], np.int64), np.asarray(sample[1], np.float32)
        sample = None
        seconds["sample"] = round(time.perf_counter() - t0, 3)
        nq = int(min(queries, max(1, n // 10), max(1, s_ids.size // 10) if index.TRAINED else s_ids.size))
        is_query = np.zeros(s_ids.size, bool)
        is_query[np.random.default_rng(seed).choice(s_ids.size, nq, replace=False)] = True
        q_ids, q_x = s_ids[is_query], s_x[is_query]
        t1 = time.perf_counter()
        if index.TRAINED:
            train_x = s_x[~is_query][: max(plan.train_rows, 1)] if nq < s_ids.size else s_x
            del s_x
            index.train(train_x)
            info["train_rows"] = int(train_x.shape[0])
            del train_x
        seconds["train"] = round(time.perf_counter() - t1, 3)
        s_x = None
        truth = ExactTopK(q_x, k=k, metric=index.metric)
        info["queries"] = nq
    t1 = time.perf_counter()
    held_out = None if q_ids is None or nq >= n else np.sort(q_ids)
    source = fresh() if held_out is None else _without(fresh(), held_out)
    build(index, source, directory=directory, ondisk=plan.ondisk, truth=truth, progress=progress)
    seconds["add"] = round(time.perf_counter() - t1, 3)
    if tuned and len(index):
        t1 = time.perf_counter()
        # the query rows are not in the index yet: each is a fresh query, as a user's is
        result = tune(index, q_x, truth, target_recall=target_recall, k=k, fetch=fetch)
        seconds["tune"] = round(time.perf_counter() - t1, 3)
        info.update({"knob": result.knob, "value": result.value, "measured_recall": round(result.recall, 5),
                     "fresh_query_recall": round(result.recall, 5), "recall_lower_90": round(result.recall_lower, 5),
                     "target_met": result.target_met, "tuned_on": "held-out rows left out of the index while tuning",
                     "curve": [list(c) for c in result.curve]})
    else:
        info.update({"knob": None, "value": None, "measured_recall": 1.0, "recall_lower_90": 1.0, "target_met": True})
    if index.KIND == "hnswpca" and not info["target_met"] and callable(batches):
        # the principal components lose neighbours of this data: the full-vector graph instead
        return choose_and_build(batches, n=n, dim=dim, metric=metric, memory_budget=memory_budget,
                                target_recall=target_recall, fetch=fetch, directory=directory, k=k, queries=queries,
                                seed=seed, device=device, progress=progress, **{**plan_options, "pca_graph": False})
    if held_out is not None and q_x is not None:
        index.add(q_ids, q_x)  # the held-out rows join the index once the tuning is done
    info.update({"rerank": index.rerank, "memory_bytes": int(index.memory_bytes()),
                 "seconds": {**seconds, "total": round(time.perf_counter() - t0, 3)}})
    index.trained_for = len(index)
    index.build_info = info
    return index

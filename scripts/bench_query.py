"""What ``Searcher.search(vector=..., k=10)`` costs beyond the bare index call, at growing collection sizes.

Builds a collection of synthetic random vectors (or starts from a copy of an existing collection
with ``--collection``; ``--workdir`` keeps it for the next run), appends synthetic vectors up to
each size in ``--sizes``, indexes it with ``--index-kind`` (default ``hnsw``: a bare call of a
fraction of a millisecond, so the difference is not lost in the noise of a 30 ms exact scan), and
measures, one query at a time on one thread, with fresh queries (stored vectors plus noise, never
in the collection, each used once per pass):

* ``search``: the whole ``Searcher.search(vector=q, k=k)`` call;
* ``bare``: the index library's own call on the same query, prepared beforehand (FAISS
  ``index.search``, hnswlib ``knn_query``), asked for the same number of results;
* ``overhead``: median ``search`` minus median ``bare`` of each pass, the two timed in turns on
  different queries of the pass (so neither finds the other's graph nodes in the cache; the roles
  swap from pass to pass); the run reports the median over ``--repeats`` passes;
* ``searcher_without_index``: ``Searcher.search`` with the index call replaced by a stored
  answer -- the overhead measured directly, without subtracting two noisy numbers.

Prints JSON, with the load average before and after (run it under ``flock /tmp/bench.lock``)::

    python scripts/bench_query.py --sizes 100000 --dim 1024 --queries 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentiles(us: np.ndarray) -> dict:
    a = np.asarray(us)
    return {"p50_us": round(float(np.percentile(a, 50)), 2), "p95_us": round(float(np.percentile(a, 95)), 2),
            "mean_us": round(float(a.mean()), 2)}


def _append_random(coll, n: int, *, dim: int, rng, batch: int = 50_000) -> None:
    from audiosim.engine.store.store import Rows

    with coll.writer() as w:
        done = 0
        while done < n:
            m = min(batch, n - done)
            start = w.manifest.next_id
            X = rng.standard_normal((m, dim)).astype(np.float32)
            w.append(Rows(path=[f"/synthetic/{start + i:08d}.wav" for i in range(m)],
                          content_sha256=[f"{start + i:064x}" for i in range(m)], offset_s=np.zeros(m),
                          duration_s=np.full(m, 5.0), label=[f"class{(start + i) % 50}" for i in range(m)], embedding=X))
            done += m


def _index(coll, kind: str, params: dict) -> float:
    """Bring the saved index to ``kind``/``params`` for the current revision; seconds spent."""
    import faiss

    from audiosim.engine.store.indexing import ensure_index

    t0 = time.perf_counter()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    with coll.writer() as w:
        if w.manifest.index_kind != kind or w.manifest.index_params != params:
            w.set_fields(index_kind=kind, index_params=params)
        ensure_index(w)
    faiss.omp_set_num_threads(1)
    return time.perf_counter() - t0


def _ns(call) -> int:
    """Nanoseconds one ``call()`` takes."""
    t = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - t


def _bare_call(vindex, kk: int):
    """The index library's own search of one prepared query [1, dim], asking for ``kk`` results."""
    if vindex.KIND == "hnswpca":
        raise SystemExit("the hnswpca kind's index call is the graph walk plus the exact re-rank: it has no bare "
                         "library call to subtract; measure a FAISS kind or hnswlib")
    raw = vindex._index
    if hasattr(raw, "knn_query"):  # hnswlib
        return lambda p: raw.knn_query(p, k=kk, num_threads=1)
    return lambda p: raw.search(p, kk)


def measure(searcher, Q: np.ndarray, *, k: int, repeats: int) -> dict:
    """Timings of ``searcher`` on the fresh queries ``Q`` (see the module docstring)."""
    from audiosim.engine.search.searcher import MIN_CANDIDATES

    state = searcher._state
    vindex = state.index.index
    kk = min(max(k, MIN_CANDIDATES), len(state.items))
    bare = _bare_call(vindex, kk)
    prepared = [vindex.prepare(q[None, :]) for q in Q]
    for q, p in zip(Q[-50:], prepared[-50:]):  # warm-up: first touches of the graph, the parts, the metadata
        searcher.search(vector=q, k=k)
        bare(p)
    passes = []
    half = len(Q) // 2
    for rep in range(repeats):
        # query pairs (a, b): one goes through the searcher, the other to the bare call, alternately, so that
        # neither finds the other's graph nodes in the cache; the roles swap from one pass to the next
        full_ns = np.empty(half, np.int64)
        bare_ns = np.empty(half, np.int64)
        for i in range(half):
            a, b = (2 * i, 2 * i + 1) if (i + rep) % 2 else (2 * i + 1, 2 * i)
            if i % 2:
                full_ns[i] = _ns(lambda: searcher.search(vector=Q[a], k=k))
                bare_ns[i] = _ns(lambda: bare(prepared[b]))
            else:
                bare_ns[i] = _ns(lambda: bare(prepared[b]))
                full_ns[i] = _ns(lambda: searcher.search(vector=Q[a], k=k))
        passes.append((full_ns / 1e3, bare_ns / 1e3))
    full = np.concatenate([f for f, _ in passes])
    bare_all = np.concatenate([b for _, b in passes])
    over = [float(np.median(f) - np.median(b)) for f, b in passes]

    # the same searches with the index call replaced by a stored answer: the searcher's own cost, directly
    answer = vindex.search_prepared(prepared[0], kk, fetch=state.index.fetch)
    vindex.search_prepared = lambda *a, **kw: answer
    try:
        stub = []
        for rep in range(repeats):
            t_ns = np.array([_ns(lambda: searcher.search(vector=q, k=k)) for q in Q])
            stub.append(float(np.median(t_ns / 1e3)))
    finally:
        del vindex.search_prepared
    return {"search": _percentiles(full), "bare": _percentiles(bare_all),
            "overhead_us_per_pass": [round(x, 2) for x in over],
            "overhead_us_median": round(float(np.median(over)), 2),
            "searcher_without_index_us_per_pass": [round(x, 2) for x in stub],
            "searcher_without_index_us_median": round(float(np.median(stub)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 100000], help="Collection sizes to measure (ascending).")
    ap.add_argument("--dim", type=int, default=1024, help="Vector dimension of the synthetic collection (YAMNet: 1024).")
    ap.add_argument("--collection", default=None, help="Start from a copy of this collection instead of random vectors.")
    ap.add_argument("--index-kind", default="hnsw", help="Index kind searched (default hnsw).")
    ap.add_argument("--index-param", action="append", default=[], metavar="KEY=INT",
                    help="Index parameter, e.g. m=32 (repeatable; default m=32, ef_construction=80 for graphs).")
    ap.add_argument("--queries", type=int, default=2000, help="Fresh queries per timed pass (half searched each way).")
    ap.add_argument("--repeats", type=int, default=5, help="Timed passes (medians over passes are reported).")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None,
                    help="Where to build the collection (kept for the next run); default a temporary folder, removed.")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.search.library import Collection

    faiss.omp_set_num_threads(1)  # one query at a time, as a warm service answers it
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    params = {"m": 32, "ef_construction": 80} if args.index_kind in ("hnsw", "hnswlib", "hnswpca") else {}
    for kv in args.index_param:
        key, _, value = kv.partition("=")
        params[key] = int(value)
    rng = np.random.default_rng(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="audiosim-bench-query-"))
    root = work / "collection"
    if root.exists() and not (args.workdir and Collection.exists(root)):
        shutil.rmtree(root)
    start = "synthetic random vectors"
    if root.exists():
        coll = Collection.open(root)
        start = f"the collection kept in {root}"
    elif args.collection:
        start = f"a copy of {args.collection}"
        shutil.copytree(args.collection, root, ignore=shutil.ignore_patterns(".lock"))
        coll = Collection.open(root)
    else:
        info = EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=args.dim, window_s=0.96, hop_s=0.48)
        coll = Collection.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), metric="cosine")
    dim = coll.dim
    out = {"dim": dim, "k": args.k, "queries": args.queries, "repeats": args.repeats, "threads": 1,
           "faiss_version": faiss.__version__, "index_kind": args.index_kind, "index_params": params,
           "start": start, "load_avg_start": list(os.getloadavg()),
           "sizes": []}
    for size in sorted(args.sizes):
        coll.refresh()
        if len(coll) < size:
            _append_random(coll, size - len(coll), dim=dim, rng=rng)
            coll.refresh()
        index_s = _index(coll, args.index_kind, params)
        t0 = time.perf_counter()
        searcher = coll.searcher()
        load_s = time.perf_counter() - t0
        picks = rng.integers(0, len(coll), size=args.queries)
        Q = coll.vectors(searcher.items.ids[picks])
        Q = (Q + 0.05 * np.linalg.norm(Q, axis=1, keepdims=True) / np.sqrt(dim)
             * rng.standard_normal(Q.shape)).astype(np.float32)  # fresh: near stored vectors, never one of them
        row = {"vectors": len(coll), "index_s": round(index_s, 1), "searcher_load_s": round(load_s, 3),
               "index_kind": coll.index_kind, **measure(searcher, Q, k=args.k, repeats=args.repeats)}
        out["sizes"].append(row)
    out["load_avg_end"] = list(os.getloadavg())
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Warm query cost of ``Searcher.search(vector=...)`` beside the bare FAISS search, at growing collection sizes.

Builds a collection of random unit vectors (or starts from an existing collection with
``--collection``, copied first), appends synthetic vectors up to each size in ``--sizes``, and
for each size times ``--queries`` warm searches: the whole ``Searcher.search`` call and the FAISS
``search`` call alone on the same (prepared) query. The difference is what audiosim adds per
query (revision check, query preparation, metadata of the k hits); it should not grow with the
collection. Prints JSON.

    python scripts/bench_query.py --sizes 2000 200000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p95_ms": round(float(np.percentile(a, 95)), 4),
            "mean_ms": round(float(a.mean()), 4)}


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
        from audiosim.engine.store.indexing import ensure_index

        ensure_index(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 200000], help="Collection sizes to measure (ascending).")
    ap.add_argument("--dim", type=int, default=1024, help="Vector dimension of the synthetic collection (YAMNet: 1024).")
    ap.add_argument("--collection", default=None, help="Start from a copy of this collection instead of random vectors.")
    ap.add_argument("--queries", type=int, default=200, help="Timed queries per size (after 20 warm-up queries).")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="Where to build the collection (default: a temporary folder).")
    args = ap.parse_args()

    import faiss

    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.search.library import Collection

    faiss.omp_set_num_threads(1)  # one query at a time, as a warm service answers it
    rng = np.random.default_rng(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="audiosim-bench-query-"))
    root = work / "collection"
    if root.exists():
        shutil.rmtree(root)
    if args.collection:
        shutil.copytree(args.collection, root, ignore=shutil.ignore_patterns(".lock"))
        coll = Collection.open(root)
    else:
        info = EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=args.dim, window_s=0.96, hop_s=0.48)
        coll = Collection.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), metric="cosine")
    dim = coll.dim
    out = {"dim": dim, "k": args.k, "queries": args.queries, "faiss_threads": 1, "faiss_version": faiss.__version__,
           "start": args.collection or "random unit vectors", "sizes": []}
    for size in sorted(args.sizes):
        coll.refresh()
        if len(coll) < size:
            _append_random(coll, size - len(coll), dim=dim, rng=rng)
            coll.refresh()
        t0 = time.perf_counter()
        searcher = coll.searcher()
        load_s = time.perf_counter() - t0
        vindex = searcher._state.index.index  # the loaded VectorIndex
        raw = vindex._index  # the FAISS index itself
        Q = coll.vectors(rng.integers(0, len(coll), size=args.queries + 20).tolist())
        Q = Q + 0.01 * rng.standard_normal(Q.shape).astype(np.float32)
        full, bare = [], []
        for i, q in enumerate(Q):
            prepared = vindex.prepare(q[None, :])
            for first in ((True, False) if i % 2 else (False, True)):  # alternate which runs first (caches)
                t = time.perf_counter()
                if first:
                    hits = searcher.search(vector=q, k=args.k)
                    t_full = time.perf_counter() - t
                else:
                    raw.search(prepared, args.k)
                    t_bare = time.perf_counter() - t
            assert len(hits) == args.k
            if i >= 20:
                full.append(t_full * 1e3)
                bare.append(t_bare * 1e3)
        over = np.asarray(full) - np.asarray(bare)
        out["sizes"].append({
            "vectors": len(coll), "searcher_load_s": round(load_s, 3), "index_kind": coll.index_kind,
            "search": _percentiles(full), "bare_faiss": _percentiles(bare),
            "overhead_p50_ms": round(float(np.percentile(full, 50) - np.percentile(bare, 50)), 4),
            "overhead_per_query": _percentiles(list(over)),
        })
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

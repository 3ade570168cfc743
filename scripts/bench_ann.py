"""Exact vs approximate FAISS search on synthetic clustered vectors: build time, queries/s, recall@10.

Prints one JSON object. Example: python scripts/bench_ann.py --n 50000 --dim 256 --queries 1000
Gaussian clusters are easy for every kind; ``scripts/bench_scale.py --source audio`` measures
on real YAMNet embeddings, streams the corpus from disk and reports memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from audiosim.indexes.kinds import make_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--metric", default="cosine", choices=["cosine", "l2"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default="flat,hnsw,ivf,sq8,ivfsq8,ivfpq", help="comma-separated index kinds (flat first)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((200, args.dim)) * 2
    db = (centers[rng.integers(0, 200, args.n)] + rng.standard_normal((args.n, args.dim))).astype(np.float32)
    q = (db[rng.integers(0, args.n, args.queries)] + 0.3 * rng.standard_normal((args.queries, args.dim))).astype(np.float32)
    ids = np.arange(args.n, dtype=np.int64)
    out = {"n": args.n, "dim": args.dim, "queries": args.queries, "metric": args.metric,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "results": {}}
    truth = None
    for kind in args.kinds.split(","):
        index = make_index(kind, dim=args.dim, metric=args.metric)
        t0 = time.perf_counter()
        index.add(ids, db)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = index.search(q, 10)
        search = time.perf_counter() - t0
        if truth is None:  # the first kind (flat) is the reference
            truth = res.ids
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, truth)]))
        out["results"][kind] = {"build_s": round(build, 3), "queries_per_s": round(args.queries / search, 1),
                                "recall_at_10_vs_flat": round(recall, 4), "params": index.params(),
                                "memory_bytes": index.memory_bytes()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

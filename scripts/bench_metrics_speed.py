"""Time the full retrieval-metric suite on 2000 vectors (default: cached ESC-50 vectors, 3072-d), print JSON.

The suite is what ``audiosim bench`` computes per variant: exhaustive rankings for both protocols
(loo, xfold) and both distances (cosine, euclidean), every metric for sub- and super-class labels,
analytic random baselines and 1000-resample bootstrap CIs. Target: under 10 s.

    python scripts/bench_metrics_speed.py --embedder yamnet --pooling mu+sigma+delta   # cached ESC-50 vectors
    python scripts/bench_metrics_speed.py --synthetic                                  # random 2000 x 3072
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="yamnet")
    ap.add_argument("--pooling", default="mu+sigma+delta", help="mu+sigma+delta gives 3 x 1024 = 3072 dims with YAMNet")
    ap.add_argument("--esc50", default=None)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--synthetic", action="store_true", help="random vectors with ESC-50's label/fold layout instead")
    ap.add_argument("--dim", type=int, default=3072, help="dimension of the synthetic vectors")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probes", action="store_true", help="also time the linear probes (not part of the target)")
    args = ap.parse_args()

    from audiosim.eval.metrics import evaluate

    t0 = time.perf_counter()
    if args.synthetic:
        rng = np.random.default_rng(0)
        targets = np.repeat(np.arange(50), 40)
        folds = np.tile(np.arange(1, 6), 400)
        X = (rng.standard_normal((2000, args.dim)) + 0.5 * rng.standard_normal((50, args.dim))[targets]).astype(np.float32)
        source = f"synthetic {X.shape}"
    else:
        from audiosim.eval.esc50_cache import esc50_vectors

        esc, X = esc50_vectors(embedder=args.embedder, pooling=args.pooling, esc50=args.esc50, cache=args.cache,
                               progress=False)
        targets, folds = esc.targets, esc.folds
        source = f"ESC-50 {args.embedder} {args.pooling} (cached collection)"
    load_s = time.perf_counter() - t0
    labels = {"sub": targets, "super": targets // 10}
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        suite = evaluate(X, labels, folds, n_boot=args.bootstrap, seed=0)
        times.append(time.perf_counter() - t)
    out = {
        "source": source, "n": int(X.shape[0]), "dim": int(X.shape[1]), "load_seconds": round(load_s, 3),
        "suite_seconds": [round(x, 3) for x in times], "suite_seconds_min": round(min(times), 3),
        "target_seconds": 10.0, "meets_target": min(times) < 10.0, "bootstrap": args.bootstrap,
        "configs": [f"{p}/{m}/{lvl}" for p in suite.summary for m in suite.summary[p] for lvl in suite.summary[p][m]],
        "xfold_cosine_sub_accuracy": suite.summary["xfold"]["cosine"]["sub"]["metrics"]["accuracy"],
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
    }
    if args.probes:
        from audiosim.eval.probes import run_probes

        t = time.perf_counter()
        run_probes(X, labels, folds)
        out["probes_seconds"] = round(time.perf_counter() - t, 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

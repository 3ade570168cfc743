"""The ESC-50 retrieval benchmark runner: embed (or reuse the cache), evaluate every variant, write the reports.

Embeddings come from :mod:`audiosim.eval.esc50_cache`; metrics from :mod:`audiosim.eval.metrics`;
``results.json``, ``report.md`` and figures from :mod:`audiosim.eval.report`.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from audiosim.engine.models.embedders import make_embedder
from audiosim.eval import report as rep
from audiosim.eval.esc50 import load_esc50
from audiosim.eval.esc50_cache import BenchCache, make_variants
from audiosim.eval.metrics import DISTANCES, KS, LEVELS, PROTOCOLS, evaluate
from audiosim.eval.probes import run_probes


# --------------------------------------------------------------------------- the benchmark
@dataclass(frozen=True)
class BenchConfig:
    embedder: str
    out: str
    poolings: tuple[str, ...] = ("mu",)
    skip_silence: tuple[bool, ...] = (True,)  # leave digital silence out of pooling (the index default); (True, False): both
    postprocess: tuple[str | None, ...] = (None,)
    weights: str | None = None
    esc50: str | None = None
    cache: str | None = None
    embedder_options: dict = field(default_factory=dict)
    protocols: tuple[str, ...] = PROTOCOLS
    metrics: tuple[str, ...] = DISTANCES
    ks: tuple[int, ...] = KS
    n_boot: int = 1000
    seed: int = 0
    probes: bool = True
    plots: bool = True
    progress: bool = True
    command: str | None = None
    threads: int | None = 1  # BLAS threads for the numerics (None = the libraries' default)


def best_variant(variants: dict, *, protocol: str = "xfold", metric: str = "cosine") -> str:
    """The variant with the highest sub-class 1-NN accuracy under ``protocol`` (else the first protocol)."""
    def score(item):
        s = item[1]["retrieval"]
        p = protocol if protocol in s else next(iter(s))
        m = metric if metric in s[p] else next(iter(s[p]))
        return s[p][m]["sub"]["metrics"]["accuracy"]
    return max(variants.items(), key=score)[0]


def run_benchmark(config: BenchConfig) -> dict:
    """Embed (or reuse), evaluate every variant, and write results.json, report.md, per_query.npz, PNGs.

    The numerics run with ``config.threads`` BLAS threads: numpy and scipy each bundle their own
    OpenBLAS, and on a small machine their spinning thread pools alternate and oversubscribe the
    cores (measured on 2 cores: a 256-d PCA whitening fit 2.4 s with one thread, 48 s with two).
    """

    with threadpool_limits(limits=config.threads):
        return _run_benchmark(config)


def _stage_printer(enabled: bool):
    """Progress lines on stderr for the stages after embedding (each variant's pooling, metrics, probes)."""

    def say(text: str) -> None:
        if enabled:
            print(f"bench {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    return say


def _run_benchmark(config: BenchConfig) -> dict:

    t_start = time.perf_counter()
    esc = load_esc50(config.esc50)
    model = make_embedder(config.embedder, weights=config.weights, options=config.embedder_options)
    t0 = time.perf_counter()
    bc = BenchCache.build(esc, model, cache=config.cache, progress=config.progress)
    embed_s = time.perf_counter() - t0
    labels = {lvl: esc.labels(lvl) for lvl in LEVELS}
    variants = make_variants(config.poolings, config.postprocess, config.skip_silence)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"variants": {}}
    per_query: dict[str, np.ndarray] = {}
    vectors_of: dict[str, np.ndarray] = {}
    top1_of: dict[str, dict[str, np.ndarray]] = {}
    say = _stage_printer(config.progress)
    for n, v in enumerate(variants, 1):
        t1 = time.perf_counter()
        step = f"[{n}/{len(variants)}] {v.name}"
        say(f"{step}: pooling{' and post-processing' if v.postprocess else ''}")
        X = bc.vectors(v)
        coll = bc.pooled(v)
        say(f"{step}: retrieval metrics ({', '.join(config.protocols)}; bootstrap {config.n_boot})")
        suite = evaluate(X, labels, esc.folds, protocols=config.protocols, metrics=config.metrics, ks=config.ks,
                         n_boot=config.n_boot, seed=config.seed)
        entry = {"pooling": v.pooling, "skip_silence": v.skip_silence, "postprocess": v.postprocess, "dim": int(X.shape[1]), "collection": str(coll.root),
                 "postprocess_fit": bc.postprocess_fit(v), "retrieval": suite.summary}
        if config.probes:
            say(f"{step}: linear probes (logistic regression, SVM) on the 5 folds")
            entry["probes"] = run_probes(X, labels, esc.folds, seed=config.seed)
        entry["seconds"] = round(time.perf_counter() - t1, 2)
        say(f"{step}: done in {entry['seconds']:.1f} s")
        results["variants"][v.name] = entry
        vectors_of[v.name] = X
        if "cosine" in suite.per_query.get(config.protocols[0], {}):
            top1_of[v.name] = {p: suite.per_query[p]["cosine"]["sub"]["top1"] for p in config.protocols}
        for protocol, by_metric in suite.per_query.items():
            for metric, by_level in by_metric.items():
                for lvl, arrays in by_level.items():
                    for key, arr in arrays.items():
                        if key == "correct@1" or key == "top1" or key == "ap@R" or re.fullmatch(r"ap@\d+", key):
                            dtype = np.int32 if key == "top1" else np.float32
                            per_query[f"{v.name}/{protocol}/{metric}/{lvl}/{key}"] = np.asarray(arrays[key], dtype=dtype)
    best = best_variant(results["variants"])
    results["best_variant"] = best
    results["meta"] = {
        "dataset": {"name": "esc50", "root": str(esc.root), "clips": len(esc), "folds": sorted(set(esc.folds.tolist()))},
        "embedder": model.info.to_dict(), "embedder_options": model.options(), "cache": str(bc.root),
        "protocols": list(config.protocols), "metrics": list(config.metrics), "levels": list(LEVELS), "ks": list(config.ks),
        "bootstrap": {"n_boot": config.n_boot, "seed": config.seed, "level": 0.95},
        "postprocess_note": "label-free; fitted on the vectors of all ESC-50 clips (every fold), no labels used",
        "embed_seconds": round(embed_s, 2), "command": config.command, "blas_threads": config.threads,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    np.savez_compressed(out / rep.PER_QUERY, filenames=np.array(esc.filenames), **per_query)
    say(f"writing results, report{' and figures' if config.plots else ''} to {out}")
    if config.plots:
        results["figures"] = rep.write_figures(out, esc, vectors_of[best], top1_of.get(best, {}), best, model.info.name)
    results["meta"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    rep.write_results(out, results)
    rep.write_report(out, results)
    return results

#!/usr/bin/env python
"""Time the trained detectors on the CPU and, when CUDA is present, on the GPU; print JSON.

Measures through the public API (:func:`audiosim.anomaly.detectors.make_detector`): per detector and
device, training steps/s (optimizer steps of ``fit``, batch size as configured) and scoring clips/s (``score``
on features already cached, i.e. the model's cost). Data: a SYNTHETIC machine-sound dataset written by
:func:`audiosim.engine.audio.machines.write_machine_dataset` into a temporary folder.

The benchmark is a list of SECTIONS, each ``(name, function(context) -> dict)``; add a section by
appending to it (e.g. ingest, dedup, map). ``--sections a,b`` runs a subset; ``--quick`` shrinks everything.
Sized to finish within 5 minutes on one GPU machine (the CPU runs are the slow part; --epochs bounds them).

    .venv/bin/python scripts/bench_gpu.py [--quick] [--device cpu|cuda|all] [--sections features,detectors]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

DETECTORS = ("ae", "conv_ae", "gamma_vae", "id_classifier", "metric", "vae", "embedding:mode=frames,scorer=knn")


def devices(requested: str) -> list[str]:
    import torch

    have_cuda = torch.cuda.is_available()
    if requested == "cuda" and not have_cuda:
        raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine")
    if requested == "cpu":
        return ["cpu"]
    return ["cpu", "cuda"] if have_cuda else ["cpu"] if requested == "all" else ["cuda"]


def section_features(ctx: dict) -> dict:
    """Log-mel (128 bands, n_fft 1024, hop 512) clips/s, computed once per clip into the shared cache."""
    from audiosim.anomaly.detectors import FeatureCache

    cache = FeatureCache()
    t0 = time.perf_counter()
    for p in ctx["all_paths"]:
        cache.logmel(p)
    dt = time.perf_counter() - t0
    ctx["cache"] = cache
    return {"clips": len(ctx["all_paths"]), "seconds": round(dt, 3), "clips_per_s": round(len(ctx["all_paths"]) / dt, 1)}


def section_detectors(ctx: dict) -> dict:
    from audiosim.anomaly.detectors import CLASSIFIERS, FeatureCache, make_detector

    cache = ctx.get("cache") or FeatureCache()
    out = {}
    for dev in ctx["devices"]:
        for spec in ctx["detectors"]:
            kind = spec.split(":")[0]
            full = spec + ("," if ":" in spec else ":") + f"epochs={ctx['epochs']}" if kind != "embedding" else spec
            paths, labels = ctx["train_paths"], ctx["train_labels"] if kind in CLASSIFIERS else None
            if labels is None:  # one group (one section) for the per-group detectors
                first = ctx["train_labels"][0]
                paths = [p for p, lab in zip(ctx["train_paths"], ctx["train_labels"]) if lab == first]
            det = make_detector(full, device=dev)
            if dev.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            t0 = time.perf_counter()
            det.fit(paths, labels=labels, cache=cache)
            fit_s = time.perf_counter() - t0
            steps, train_s = getattr(det, "train_steps_", 0), getattr(det, "train_seconds_", 0.0)
            test = ctx["test_paths"]
            tl = [ctx["test_labels"][i] for i in range(len(test))] if kind in CLASSIFIERS else None
            det.score(test[:2], labels=tl[:2] if tl else None, cache=cache)  # warm-up
            t0 = time.perf_counter()
            reps = 0
            while reps < 3 or time.perf_counter() - t0 < 1.0:
                det.score(test, labels=tl, cache=cache)
                reps += 1
            score_s = (time.perf_counter() - t0) / reps
            out[f"{kind}@{dev}"] = {"spec": det.spec, "device": dev, "train_clips": len(paths), "fit_seconds": round(fit_s, 3),
                                    "train_steps": steps, "train_steps_per_s": round(steps / train_s, 2) if steps else None,
                                    "score_clips_per_s": round(len(test) / score_s, 1)}
            print(f"# {kind}@{dev}: {out[f'{kind}@{dev}']}", file=sys.stderr, flush=True)
    return out


def section_ingest(ctx: dict) -> dict:
    """``audiosim.index_folder`` clips/s of the synthetic dataset (``$BENCH_GPU_EMBEDDER``, default logmel; a torch
    embedder such as panns runs on each device)."""
    import audiosim

    name = os.environ.get("BENCH_GPU_EMBEDDER", "logmel")
    out = {}
    for dev in ctx["devices"] if name in ("panns", "vae", "hf", "onnx") else ["cpu"]:
        coll = Path(ctx["tmp"]) / f"ingest_{dev}"
        # on a GPU: decoding threads on every core feed the main thread, which embeds the windows of up to 64 files
        # per forward pass (ThreadStage batching, for embedders that batch windows: panns)
        workers = 2 if dev == "cpu" else max(2, os.cpu_count() or 2)
        r = audiosim.index_folder(ctx["root"], coll, embedder=name, device=None if dev == "cpu" else dev,
                                  label_from="none", workers=workers)
        out[dev] = {"embedder": name, "clips": r.embedded, "seconds": round(r.seconds, 2),
                    "clips_per_s": round(r.clips_per_s, 1), "engine": r.engine, "decode_threads": workers}
        ctx["ingest_collection"] = coll
    return out


def section_dedup(ctx: dict) -> dict:
    """``Collection.duplicates`` over N random 1,024-d vectors with 1 % planted near copies (N = 100,000; --quick 10,000)."""
    import faiss
    import numpy as np

    import audiosim
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.store import store

    n, d = (10_000 if ctx["quick"] else 100_000), 1024
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    planted = n // 100
    X[n - planted:] = X[rng.choice(n - planted, planted, replace=False)] + 0.1 * rng.standard_normal((planted, d)).astype(np.float32)
    root = Path(ctx["tmp"]) / "dedup"
    cls = getattr(store, "CollectionStore", None) or getattr(store, "Collection")
    c = cls.create(root, embedder=EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=d, window_s=1.0,
                                               hop_s=1.0), pooling=PoolingSpec.parse("mu"), metric="cosine")
    with c.writer(purpose="bench") as w:
        w.append(store.Rows(path=[f"/synthetic/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                            offset_s=np.zeros(n), duration_s=np.ones(n), label=[None] * n, embedding=X))
    coll = audiosim.open_collection(root)
    out = {"vectors": n, "dim": d, "planted_pairs": planted}
    gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    for dev in ["cpu"] + (["cuda"] if gpu else []):
        t0 = time.perf_counter()
        rep = coll.duplicates(device=dev)
        out[dev] = {"seconds": round(time.perf_counter() - t0, 2), "groups": len(rep.groups)}
    if not gpu:
        out["cuda"] = "skipped: FAISS has no GPU here (install faiss-gpu, the gpu extra)"
    return out


def section_map(ctx: dict) -> dict:
    """``audiosim map``'s projection and clustering of the ingest section's collection."""
    import audiosim
    from audiosim.engine.search.atlas import write_map

    coll = ctx.get("ingest_collection")
    if coll is None:
        return {"skipped": "needs the ingest section"}
    t0 = time.perf_counter()
    m = write_map(audiosim.open_collection(coll), Path(ctx["tmp"]) / "map.html")
    return {"points": len(m.ids), "method": m.method, "clusters": len(m.cluster_names),
            "seconds": round(time.perf_counter() - t0, 2)}


SECTIONS = [("features", section_features), ("detectors", section_detectors), ("ingest", section_ingest),
            ("dedup", section_dedup), ("map", section_map)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--sections", default=",".join(n for n, _ in SECTIONS))
    ap.add_argument("--detector", action="append", default=None, help="detector spec, repeatable (default: all)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny data and 1 epoch (a smoke run)")
    args = ap.parse_args(argv)
    import torch

    from audiosim.engine.audio.machines import SynthConfig, write_machine_dataset
    from audiosim.eval.dcase_layout import read_dcase

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audiosim_bench_gpu_") as tmp:
        cfg = SynthConfig(machines=("fan",), ids=2, train=6 if args.quick else 16, test_normal=4 if args.quick else 8,
                          test_anomaly=4 if args.quick else 8)
        write_machine_dataset(tmp, cfg)
        ds = read_dcase(tmp)
        ctx = {"devices": devices(args.device), "epochs": 1 if args.quick else args.epochs,
               "detectors": args.detector or list(DETECTORS),
               "train_paths": [c.path for c in ds.train()], "train_labels": [c.section for c in ds.train()],
               "test_paths": [c.path for c in ds.test()], "test_labels": [c.section for c in ds.test()]}
        ctx["all_paths"] = ctx["train_paths"] + ctx["test_paths"]
        ctx.update(tmp=tmp, root=tmp, quick=args.quick)
        wanted = args.sections.split(",")
        result = {"benchmark": "bench_gpu", "data": "SYNTHETIC machine sounds (fan, 2 sections, 2 s clips at 16 kHz)",
                  "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                              "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                  "epochs": ctx["epochs"], "sections": {}}
        for name, fn in SECTIONS:
            if name in wanted:
                t0 = time.perf_counter()
                result["sections"][name] = fn(ctx)
                result["sections"][name + "_seconds"] = round(time.perf_counter() - t0, 2)
    result["seconds"] = round(time.perf_counter() - t_all, 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

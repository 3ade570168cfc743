"""Ingest throughput against the machine's bound: local engine, Ray engine and a naive loop, paired.

Prints one JSON object. Two modes:

``--mode bound`` (default): ESC-50 (``$ESC50_ROOT/audio``) with yamnet.

* **decode-only** and **inference-only** CPU seconds, measured in this process one file after
  another (``resource.getrusage``): decode = what the pipeline does per file before the model
  (:func:`audiosim.engine.ingest.pipeline.decode_item`: sha256 of the bytes, decode, resample to 16 kHz);
  inference = ``embed_frames`` + mean pooling on the decoded waveforms.
* **bound** = (decode + inference CPU seconds) / usable cores: the shortest wall time any
  schedule of this work can take on this machine.
* **local engine** (``index_folder(..., engine="local")``: worker processes, one per core) and
  the **naive loop** (``librosa.load`` + ``embed_frames`` + mean pool, one file after another)
  run alternately ``--pairs`` times (naive, local, local, naive, ...), each into a fresh
  collection; wall seconds, CPU seconds (this process and its children), and the 1-minute load
  average before each run, since other processes share the cores.
* The bound is measured again right before every local run (the machine's speed drifts between
  minutes when other tenants share it); each local run reports its own ``bound_fraction`` =
  its bound / its wall, and ``bound_fraction_cpu`` = (decode + inference CPU) / the engine's
  CPU: the same fraction when the cores are not shared, i.e. the engine's own overhead (IPC,
  commits, index build). The summary gives the medians (what the issue asks to bring to >= 0.9).
* **Ray engine** (2 actors, ``ray.init(num_cpus=2)``; startup timed apart): wall seconds, the CPU
  of the Ray process tree, and whether its vectors equal the local engine's, file by file.

``--mode scale --files 20000``: a folder of N symbolic links to ESC-50 clips under distinct names
(each one is embedded: there is no dedup by content), indexed with ``--embedder logmel``; then 100
more links are added and indexed. Reports seconds, part files after compaction and what the
incremental run embedded.

Examples::

    AUDIOSIM_MODELS=/work/shared/models ESC50_ROOT=/work/shared/datasets/esc50 python scripts/bench_ingest.py
    python scripts/bench_ingest.py --limit 200 --pairs 1 --no-ray      # a quick look
    python scripts/bench_ingest.py --mode scale --files 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root``'s descendants (and the children they reaped), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(d))
        times[int(d)] = sum(int(x) for x in fields[11:15]) / tick
    total, todo = 0.0, list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(parents.get(pid, []))
    return total


def measured(fn):
    """(result, wall s, CPU s of this process and its reaped children, 1-min load before)."""
    load = os.getloadavg()[0]
    c0, w0 = cpu_self() + cpu_children(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0, cpu_self() + cpu_children() - c0, load


def decode_and_inference_cpu(files: list[str], embedder, *, chunk: int = 100) -> dict:
    """CPU seconds of decoding and of inference, measured apart on the same files, one after another."""
    from audiosim.engine.ingest.pipeline import FileItem, decode_item

    decode = infer = 0.0
    lengths = set()
    for start in range(0, len(files), chunk):
        c = cpu_self()
        decoded = [decode_item(FileItem(path=p), sample_rate=embedder.info.sample_rate) for p in files[start:start + chunk]]
        decode += cpu_self() - c
        c = cpu_self()
        for d in decoded:
            frames, _ = embedder.embed_frames(d.audio)
            frames.mean(axis=0)
        infer += cpu_self() - c
        lengths.update(d.audio.size for d in decoded)
    return {"decode_cpu_s": round(decode, 2), "inference_cpu_s": round(infer, 2), "distinct_input_lengths": len(lengths)}


def naive_loop(files: list[str], embedder) -> np.ndarray:
    import librosa

    out = []
    for p in files:
        y, _ = librosa.load(p, sr=embedder.info.sample_rate, mono=True)
        frames, _ = embedder.embed_frames(y.astype(np.float32))
        out.append(frames.mean(axis=0))
    return np.stack(out)


def vectors_by_path(root: Path) -> dict[str, bytes]:
    from audiosim.engine.store.store import CollectionStore

    coll = CollectionStore.open(root)
    ids, X = coll.embeddings()
    pos = {int(i): k for k, i in enumerate(ids)}
    return {r["path"]: X[pos[r["id"]]].tobytes() for r in coll.records(("path",))}


def link_folder(files: list[str], folder: Path, n: int, *, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        src = files[i % len(files)]
        (folder / f"c{i:06d}_{Path(src).name}").symlink_to(src)


def mode_bound(args, files: list[str], work: Path) -> dict:
    from audiosim.engine.models.embedders import make_embedder
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.ingest.pipeline import usable_cores

    cores = usable_cores()
    folder = work / "audio"
    link_folder(files, folder, len(files))
    linked = sorted(str(p) for p in folder.iterdir())
    embedder = make_embedder(args.embedder)
    out = {"files": len(files), "embedder": args.embedder, "cores": cores, "machine_cpus": os.cpu_count()}

    runs = {"local": [], "naive": []}
    bounds = []
    order = (["naive", "local", "local", "naive"] * args.pairs)[: 2 * args.pairs]  # ABBA: drifting load hits both
    local_root = None
    for k, name in enumerate(order):
        if name == "local":
            # The bound is measured right before each local run: this machine's speed drifts by 10 % and
            # more between minutes (other tenants), so a bound taken once at the start mismeasures later runs.
            parts = decode_and_inference_cpu(linked, embedder)
            bounds.append(parts)
            bound_s = (parts["decode_cpu_s"] + parts["inference_cpu_s"]) / cores
            if local_root is not None:
                shutil.rmtree(local_root)  # keep only the last one, for the Ray comparison
            local_root = work / f"local{k}"
            rep, w, c, load = measured(lambda root=local_root: index_folder(folder, root, embedder=args.embedder,
                                                                            processes="auto"))
            runs["local"].append({"wall_s": round(w, 2), "cpu_s": round(c, 2), "load_1min_before": round(load, 2),
                                  "bound_s": round(bound_s, 2), "bound_fraction": round(bound_s / w, 3),
                                  "bound_fraction_cpu": round(bound_s * cores / c, 3),
                                  "engine": rep.engine, "embedded": rep.embedded, "failed": len(rep.failures)})
        else:
            _, w, c, load = measured(lambda: naive_loop(linked, embedder))
            runs["naive"].append({"wall_s": round(w, 2), "cpu_s": round(c, 2), "load_1min_before": round(load, 2)})
    for key in ("decode_cpu_s", "inference_cpu_s"):
        out[key] = round(float(np.median([b[key] for b in bounds])), 2)
    out["distinct_input_lengths"] = bounds[0]["distinct_input_lengths"]
    cpu_work = out["decode_cpu_s"] + out["inference_cpu_s"]
    out["bound_s"] = round(cpu_work / cores, 2)
    out["bound_clips_per_s"] = round(len(files) / out["bound_s"], 1)
    local_wall = float(np.median([r["wall_s"] for r in runs["local"]]))
    local_cpu = float(np.median([r["cpu_s"] for r in runs["local"]]))
    naive_wall = float(np.median([r["wall_s"] for r in runs["naive"]]))
    out["local_engine"] = {"runs": runs["local"], "wall_s": local_wall, "cpu_s": local_cpu,
                           "clips_per_s": round(len(files) / local_wall, 1),
                           "bound_fraction": round(float(np.median([r["bound_fraction"] for r in runs["local"]])), 3),
                           "bound_fraction_cpu": round(float(np.median([r["bound_fraction_cpu"]
                                                                         for r in runs["local"]])), 3),
                           "cpu_utilisation": round(local_cpu / (local_wall * cores), 3)}
    out["naive_loop"] = {"runs": runs["naive"], "wall_s": naive_wall,
                         "cpu_s": float(np.median([r["cpu_s"] for r in runs["naive"]])),
                         "clips_per_s": round(len(files) / naive_wall, 1)}
    out["paired_speedup_local_vs_naive"] = [round(n["wall_s"] / loc["wall_s"], 2)
                                            for n, loc in zip(runs["naive"], runs["local"])]
    if not args.no_ray:
        out["ray_engine"] = ray_run(args, folder, work, local_root)
    out["load_1min_end"] = round(os.getloadavg()[0], 2)
    return out


def ray_run(args, folder: Path, work: Path, local_root: Path) -> dict:
    import ray

    from audiosim.engine.ingest.indexer import index_folder

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    startup = time.perf_counter() - t0
    root = work / "ray"
    try:
        before = tree_cpu(os.getpid())
        rep, w, c, load = measured(lambda: index_folder(folder, root, embedder=args.embedder, engine="ray", num_actors=2))
        ray_cpu = tree_cpu(os.getpid()) - before + c
    finally:
        ray.shutdown()
    a, b = vectors_by_path(local_root), vectors_by_path(root)
    return {"startup_s": round(startup, 2), "wall_s": round(w, 2), "cpu_s": round(ray_cpu, 2),
            "load_1min_before": round(load, 2), "clips_per_s": round(rep.embedded / w, 1), "engine": rep.engine,
            "embedded": rep.embedded, "vectors_equal_local": sorted(a) == sorted(b) and all(a[p] == b[p] for p in a)}


def mode_scale(args, files: list[str], work: Path) -> dict:
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.store.store import CollectionStore

    folder, root = work / "scale", work / "coll"
    link_folder(files, folder, args.files)
    rep, w, c, load = measured(lambda: index_folder(folder, root, embedder=args.scale_embedder, processes="auto"))
    parts_dir = len(list((root / "parts").iterdir()))
    out = {"files": args.files, "embedder": args.scale_embedder, "load_1min_before": round(load, 2),
           "index": {"wall_s": round(w, 2), "cpu_s": round(c, 2), "embedded": rep.embedded, "failed": len(rep.failures),
                     "engine": rep.engine, "vectors": rep.vectors, "compaction": rep.compaction,
                     "parts_in_manifest": rep.parts, "part_files_on_disk": parts_dir}}
    link_folder(files, folder, 100, start=args.files)
    rep2, w2, c2, load2 = measured(lambda: index_folder(folder, root))
    coll = CollectionStore.open(root)
    out["incremental_100"] = {"wall_s": round(w2, 2), "cpu_s": round(c2, 2), "load_1min_before": round(load2, 2),
                              "scanned": rep2.scanned, "new": rep2.new, "unchanged": rep2.unchanged,
                              "embedded": rep2.embedded, "vectors_added": rep2.vectors_added, "engine": rep2.engine,
                              "vectors": len(coll), "parts": len(coll.manifest.parts),
                              "index_count": coll.manifest.index.count if coll.manifest.index else None,
                              "index_fresh": coll.manifest.index_fresh}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["bound", "scale"], default="bound")
    ap.add_argument("--esc50", default=os.environ.get("ESC50_ROOT"), help="ESC-50 root (default $ESC50_ROOT)")
    ap.add_argument("--embedder", default="yamnet")
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N clips (a quick look).")
    ap.add_argument("--pairs", type=int, default=2, help="Naive/local pairs, run alternately (ABBA).")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--files", type=int, default=20000, help="--mode scale: files in the folder.")
    ap.add_argument("--scale-embedder", default="logmel")
    ap.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed).")
    args = ap.parse_args()
    if not args.esc50 or not (Path(args.esc50) / "audio").is_dir():
        raise SystemExit("give --esc50 DIR (or set ESC50_ROOT): the ESC-50 root with audio/")
    files = sorted(str(p) for p in (Path(args.esc50) / "audio").glob("*.ogg"))[: args.limit]
    tmp = tempfile.mkdtemp(prefix="audiosim-bench-ingest-", dir=args.work)
    try:
        out = mode_bound(args, files, Path(tmp)) if args.mode == "bound" else mode_scale(args, files, Path(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Index kinds at scale: build seconds, peak RSS, index bytes, recall@10 against exact, queries/s.

Prints one JSON object. Examples::

    python scripts/bench_scale.py --n 20000 --source gaussian --dim 256          # a quick run
    python scripts/bench_scale.py --n 1000000 --dim 1024 --source audio          # the issue-13 run

Corpus (written once to ``--workdir`` as a raw float32 file, ``n x dim``, and reused; it is never
in RAM at once):

* ``audio``: real YAMNet frame embeddings of ESC-50 (1024-d; de-duplicated), then random
  mixtures ``a * f_i + (1 - a) * f_j`` of two distinct frames (``a`` uniform) plus Gaussian
  noise of ``--noise`` x the median frame norm, de-duplicated by content hash, in random order.
  Frames come from ``--frames-npy`` (an ``[N, 1024]`` array saved earlier) or are embedded with
  ``BenchCache.build(load_esc50(), make_embedder("yamnet"))`` (``$ESC50_ROOT``, ``$AUDIOSIM_MODELS``)
  and saved beside the corpus for the next run.
* ``gaussian``: 200 Gaussian clusters (``bench_ann.py``'s recipe).

Queries (``--queries``) are held out: fresh mixtures (audio) or fresh cluster draws (gaussian),
never in the corpus. Ground truth: exact top-100 over the whole corpus, streamed in chunks.

Each kind runs in its own process (so its peak RSS, ``ru_maxrss``, is its own) and builds by
streaming the corpus file in batches (train on a uniform sample, then add). Kinds: ``flat``,
``hnsw`` (m=32, efConstruction=80), ``ivf`` (IVF-Flat), ``ivfpq`` (m=dim/8, no re-ranking),
``ivfpq+rerank`` (the same, re-ranking the top 10 x k exactly with vectors read from the corpus
file by ``pread``, as the engine reads stored vectors), ``sq8``, ``ivfsq8``, and ``auto``
(``choose_and_build`` with ``--memory-budget`` and ``--target-recall``, tuned on its own held-out
sample rows; re-ranks with the same fetch). For each search setting: recall@10 of all queries,
queries/s one at a time (for at most ``--single-seconds``) and in batches of 256.
``index_bytes`` is the resident memory the index reports (``memory_bytes``), ``file_bytes`` what
``save`` wrote. Kinds whose build passes ``--max-build-s`` are stopped and reported as such.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("flat", "hnsw", "ivf", "ivfpq", "ivfpq+rerank", "sq8", "ivfsq8", "auto")
BATCH_ROWS = 32768
GT_KEEP = 100
K = 10
SETTINGS = {"hnsw": [32, 64, 128, 256], "ivf": [8, 16, 32, 64], "ivfsq8": [8, 16, 32, 64],
            "ivfpq": [8, 16, 32, 64, 128], "ivfpq+rerank": [8, 16, 32, 64, 128]}


# ---------------------------------------------------------------------- corpus
def corpus_paths(args) -> dict[str, Path]:
    tag = f"{args.source}-n{args.n}-d{args.dim}-s{args.seed}-q{args.queries}" + (
        f"-noise{args.noise:g}" if args.source == "audio" else "")
    w = Path(args.workdir)
    return {"x": w / f"corpus-{tag}.f32", "q": w / f"queries-{tag}.npy", "gt": w / f"truth-{tag}.npz",
            "meta": w / f"corpus-{tag}.json"}


def load_frames(args) -> np.ndarray:
    if args.frames_npy and Path(args.frames_npy).is_file():
        return np.load(args.frames_npy).astype(np.float32)
    from audiosim.engine.models.embedders import make_embedder
    from audiosim.eval.esc50 import load_esc50
    from audiosim.eval.esc50_cache import BenchCache

    bc = BenchCache.build(load_esc50(args.esc50), make_embedder("yamnet"), cache=Path(args.workdir) / "esc50-cache",
                          progress=True)
    frames = np.concatenate(bc.clip_frames()).astype(np.float32)
    out = Path(args.frames_npy or Path(args.workdir) / "yamnet_frames.npy")
    np.save(out, frames)
    return frames


def row_hashes(x: np.ndarray) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in x],
                    dtype=np.uint64)


def make_corpus(args, paths: dict[str, Path]) -> dict:
    """Write the corpus file and the held-out queries; returns their description."""
    rng = np.random.default_rng(args.seed)
    n, dim = args.n, args.dim
    if args.source == "audio":
        frames = np.unique(load_frames(args), axis=0)
        if frames.shape[1] != dim:
            raise SystemExit(f"YAMNet frames are {frames.shape[1]}-d; pass --dim {frames.shape[1]} for --source audio")
        sigma = args.noise * float(np.median(np.linalg.norm(frames, axis=1))) / np.sqrt(dim)

        def draw(m: int, r: np.random.Generator) -> np.ndarray:
            i = r.integers(0, len(frames), m)
            j = (i + r.integers(1, len(frames), m)) % len(frames)  # j != i
            a = r.random(m, dtype=np.float32)[:, None]
            return (a * frames[i] + (1 - a) * frames[j] + sigma * r.standard_normal((m, dim), dtype=np.float32)).astype(np.float32)

        described = {"frames": len(frames), "noise_sigma": sigma}
    else:
        centers = rng.standard_normal((200, dim)).astype(np.float32) * 2
        frames = None

        def draw(m: int, r: np.random.Generator) -> np.ndarray:
            return (centers[r.integers(0, 200, m)] + r.standard_normal((m, dim), dtype=np.float32)).astype(np.float32)

        described = {"clusters": 200}
    # rows in random order: real frames (audio) scattered among the synthetic rows
    is_frame = np.zeros(n, bool)
    if frames is not None:
        is_frame[rng.choice(n, min(len(frames), n), replace=False)] = True
    frame_rows = iter(frames[rng.permutation(len(frames))[: is_frame.sum()]] if frames is not None else [])
    seen: set[int] = set()
    dropped = 0
    paths["x"].parent.mkdir(parents=True, exist_ok=True)
    tmp = paths["x"].with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for start in range(0, n, BATCH_ROWS):
            m = min(BATCH_ROWS, n - start)
            block = draw(m, rng)
            for r in np.flatnonzero(is_frame[start:start + m]):
                block[r] = next(frame_rows)
            while True:  # de-duplicate by content hash, redrawing repeats
                h = row_hashes(block)
                dup = np.fromiter((x in seen for x in h.tolist()), bool, m) | _first_dups(h)
                if not dup.any():
                    break
                dropped += int(dup.sum())
                block[dup] = draw(int(dup.sum()), rng)
            seen.update(h.tolist())
            f.write(np.ascontiguousarray(block, np.float32).tobytes())
    os.replace(tmp, paths["x"])
    q = draw(args.queries, np.random.default_rng(args.seed + 1))
    qh = set(row_hashes(q).tolist()) & seen
    np.save(paths["q"], q)
    meta = {"source": args.source, "n": n, "dim": dim, "queries": args.queries, "redrawn_duplicates": dropped,
            "queries_in_corpus": len(qh), **described}
    paths["meta"].write_text(json.dumps(meta))
    return meta


def _first_dups(h: np.ndarray) -> np.ndarray:
    """True for rows whose hash repeats an earlier row's in the same block."""
    _, first = np.unique(h, return_index=True)
    dup = np.ones(h.size, bool)
    dup[first] = False
    return dup


def batches(path: Path, n: int, dim: int, rows: int = BATCH_ROWS):
    """(ids, vectors) chunks read from the corpus file into fresh buffers (not memory-mapped)."""
    with open(path, "rb") as f:
        for start in range(0, n, rows):
            m = min(rows, n - start)
            x = np.fromfile(f, dtype=np.float32, count=m * dim).reshape(m, dim)
            yield np.arange(start, start + m, dtype=np.int64), x


def ground_truth(args, paths: dict[str, Path], metric: str) -> float:
    from audiosim.indexes.groundtruth import ExactTopK

    t0 = time.perf_counter()
    truth = ExactTopK(np.load(paths["q"]), k=K, metric=metric, keep=GT_KEEP)
    for ids, x in batches(paths["x"], args.n, args.dim):
        truth.update(ids, x)
    s, i = truth.result()
    np.savez(paths["gt"], scores=s, ids=i)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- one kind (child process)
class Fetcher:
    """Stored vectors by id, read from the corpus file with pread (the page cache, not this process, holds them)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.row = dim * 4
        self.dim = dim

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), self.dim), np.float32)
        for r, i in enumerate(np.asarray(ids, dtype=np.int64)):
            out[r] = np.frombuffer(os.pread(self.fd, self.row, int(i) * self.row), np.float32)
        return out


def measure(index, q, gt_scores, gt_ids, *, fetch, single_seconds: float, metric: str) -> dict:
    from audiosim.indexes.groundtruth import recall_at_k

    kw = {"fetch": fetch} if index.rerank else {}
    t0 = time.perf_counter()
    found = []
    for s in range(0, len(q), 256):
        found.append(index.search(q[s:s + 256], K, **kw).ids)
    batch_s = time.perf_counter() - t0
    found = np.concatenate(found)
    recall = recall_at_k(found, gt_scores, gt_ids, K, metric=metric)
    strict = float(np.mean([len(set(a) & set(b[:K])) / K for a, b in zip(found, gt_ids)]))
    done, t0 = 0, time.perf_counter()
    while done < len(q) and (done < 5 or time.perf_counter() - t0 < single_seconds):
        index.search(q[done:done + 1], K, **kw)
        done += 1
    single_s = time.perf_counter() - t0
    return {"recall_at_10": round(recall, 4), "recall_at_10_ids": round(strict, 4),
            "qps_single": round(done / single_s, 2), "single_queries_timed": done,
            "qps_batch256": round(len(q) / batch_s, 2)}


def peak_rss() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's from before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_kind(args) -> dict:
    import faiss

    from audiosim.indexes.auto import choose_and_build, ivf_nlist
    from audiosim.indexes.kinds import make_index
    from audiosim.indexes.streaming import build, sample_rows

    paths = corpus_paths(args)
    kind, n, dim, metric = args.child, args.n, args.dim, args.metric
    q = np.load(paths["q"])
    gt = np.load(paths["gt"])
    fetch = Fetcher(paths["x"], dim)
    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=args.workdir))
    t0 = time.perf_counter()
    phases = {}
    if kind == "auto":
        index = choose_and_build(lambda: batches(paths["x"], n, dim), n=n, dim=dim, metric=metric,
                                 memory_budget=args.memory_budget, target_recall=args.target_recall, fetch=fetch,
                                 seed=args.seed)
        phases = index.build_info.get("seconds", {})
    else:
        nlist = ivf_nlist(n)
        pq_m = dim // 8 if dim % 8 == 0 else None
        params = {"flat": {}, "hnsw": {"m": 32, "ef_construction": 80}, "sq8": {},
                  "ivf": {"nlist": nlist, "niter": 10}, "ivfsq8": {"nlist": nlist, "niter": 10},
                  "ivfpq": {"nlist": nlist, "niter": 10, "m": pq_m},
                  "ivfpq+rerank": {"nlist": nlist, "niter": 10, "m": pq_m, "rerank": 10}}[kind]
        index = make_index(kind.split("+")[0], dim=dim, metric=metric, **params)
        if index.TRAINED:
            ts = time.perf_counter()
            _, sample = sample_rows(batches(paths["x"], n, dim), min(n, max(64 * nlist, 20000), 120_000), seed=args.seed)
            phases["sample"] = round(time.perf_counter() - ts, 2)
            ts = time.perf_counter()
            index.train(sample)
            del sample
            phases["train"] = round(time.perf_counter() - ts, 2)
        ts = time.perf_counter()
        build(index, batches(paths["x"], n, dim))
        phases["add"] = round(time.perf_counter() - ts, 2)
    build_s = time.perf_counter() - t0
    rss_build = peak_rss()
    saved = index.save(out_dir)
    file_bytes = sum(f["bytes"] for f in saved["files"].values())
    points = []
    knob = index.KNOB
    values = [None] if kind == "auto" or knob is None else SETTINGS.get(kind, [None])
    for v in values:
        if v is not None:
            index.set_knob(v)
        point = measure(index, q, gt["scores"], gt["ids"], fetch=fetch, single_seconds=args.single_seconds, metric=metric)
        points.append({**({knob: getattr(index, knob)} if knob else {}), "rerank": index.rerank, **point})
    for f in out_dir.iterdir():
        f.unlink()
    out_dir.rmdir()
    result = {"kind": kind, "params": index.params(), "build_s": round(build_s, 2), "build_phases_s": phases,
              "peak_rss_bytes": peak_rss(), "peak_rss_after_build_bytes": rss_build,
              "index_bytes": int(index.memory_bytes()), "file_bytes": int(file_bytes), "count": len(index),
              "faiss_threads": faiss.omp_get_max_threads(), "points": points}
    if kind == "auto":
        result["auto"] = {k: v for k, v in index.build_info.items() if k != "curve"}
    return result


# ---------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--source", choices=["audio", "gaussian"], default="audio")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--memory-budget", default=None, help="for auto (default: 1/8 of the flat index)")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--noise", type=float, default=0.05, help="audio: noise std as a fraction of the median frame norm")
    ap.add_argument("--frames-npy", default=None, help="audio: YAMNet frames saved earlier ([N, 1024] .npy)")
    ap.add_argument("--esc50", default=None, help="audio: ESC-50 root (default $ESC50_ROOT)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "audiosim-bench-scale"))
    ap.add_argument("--single-seconds", type=float, default=20.0, help="time budget of the one-at-a-time timing per setting")
    ap.add_argument("--max-build-s", type=float, default=3600.0, help="stop a kind that runs longer than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_budget is None:
        args.memory_budget = str(max(1 << 20, args.n * args.dim * 4 // 8))
    if args.child:
        print(json.dumps(run_kind(args)))
        return
    kinds = [k for k in args.kinds.split(",") if k]
    bad = set(kinds) - set(KINDS)
    if bad:
        raise SystemExit(f"unknown kinds {sorted(bad)}; choose from {','.join(KINDS)}")
    paths = corpus_paths(args)
    t0 = time.perf_counter()
    meta = json.loads(paths["meta"].read_text()) if paths["meta"].is_file() and paths["x"].is_file() else None
    corpus_s = 0.0
    if meta is None:
        meta = make_corpus(args, paths)
        corpus_s = time.perf_counter() - t0
    gt_s = ground_truth(args, paths, args.metric) if not paths["gt"].is_file() else None
    out = {"n": args.n, "dim": args.dim, "source": args.source, "metric": args.metric, "queries": args.queries,
           "k": K, "corpus": meta, "corpus_seconds": round(corpus_s, 1),
           "ground_truth_seconds": None if gt_s is None else round(gt_s, 1),
           "memory_budget_auto": int(args.memory_budget) if str(args.memory_budget).isdigit() else args.memory_budget,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
           "results": {}}
    child_args = [a for a in sys.argv[1:]]
    for kind in kinds:
        cmd = [sys.executable, __file__, *child_args, "--child", kind, "--memory-budget", str(args.memory_budget)]
        print(f"[bench_scale] {kind} ...", file=sys.stderr, flush=True)
        t1 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.max_build_s)
        except subprocess.TimeoutExpired:
            out["results"][kind] = {"kind": kind, "error": f"did not finish within --max-build-s {args.max_build_s:g} s"}
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            out["results"][kind] = {"kind": kind, "error": proc.stderr[-2000:]}
        else:
            out["results"][kind] = json.loads(lines[-1])
        out["results"][kind]["wall_s"] = round(time.perf_counter() - t1, 1)
        print(f"[bench_scale] {kind}: {json.dumps(out['results'][kind])[:400]}", file=sys.stderr, flush=True)
    out["machine"]["load_avg_end"] = os.getloadavg()
    flat = out["results"].get("flat", {})
    if flat.get("points"):
        out["flat_qps_single"] = flat["points"][0]["qps_single"]
        out["flat_index_bytes"] = flat["index_bytes"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

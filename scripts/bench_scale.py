"""Search at scale, measured as a user gets it: a real collection, its ``auto`` index, ``Searcher.search``.

Prints one JSON object. Examples::

    python scripts/bench_scale.py --n 3000 --dim 64 --source gaussian --queries 50     # seconds (synthetic)
    python scripts/bench_scale.py --n 1000000 --dim 1024 --source audio               # the issue-22 run

    # on a shared machine: the untimed steps niced, only the timed queries under the benchmark lock
    nice -n 10 python scripts/bench_scale.py --n 1000000 --dim 1024 --source audio --phase prepare
    flock /tmp/bench.lock python scripts/bench_scale.py --n 1000000 --dim 1024 --source audio --phase search

Steps (each in its own process, so each peak RSS is its own):

1. **write** -- ``--n`` vectors of ``--dim`` floats are written into a new collection through the
   store's writer (``CollectionStore.writer().append``, one part of ``--part-rows`` rows at a time:
   Parquet part + its ``.vec`` vector file), never all in memory. The exact top-k of every query
   over the same rows (brute force, :class:`~audiosim.indexes.groundtruth.ExactTopK`, keyed by the
   ids the store assigned) is accumulated while writing.
2. **index** -- the index built as ``audiosim index --index-kind auto --memory-budget 512MiB``
   builds it: the collection's ``index_kind`` / ``index_params`` set under the writer lock, then
   :func:`audiosim.engine.store.indexing.ensure_index` (``auto``: kind chosen from the size and
   the budget, knob and re-rank tuned on held-out rows; re-ranking reads the parts' vector files).
3. **warm** (``--vector-cache warm``, the default) -- every stored vector read once through the
   store (``CollectionStore.vectors``), untimed, so the OS page cache holds the vector files that
   re-ranking reads: the steady state of a long-running service on a machine with the RAM for
   them. ``--vector-cache as-is`` searches with whatever the cache holds. Either way the fraction
   of vector-file pages resident before and after the search step is reported (``mincore``).
4. **search** -- ``audiosim.open_collection(...).searcher().search(vector=q, k=10)``, one query at
   a time on one thread (FAISS and BLAS limited to 1), ``--warmup`` fresh queries first, then the
   ``--queries`` fresh queries in random order. Reports recall@10 against the exact neighbours
   (ties count; ``recall_at_10_ids``: plain id overlap), p50/p95/mean latency, queries/s, what
   ``auto`` chose (from the index's sidecar, as ``audiosim info --json`` shows it), the index's
   resident and file bytes, the search process's RSS before opening the collection, after opening
   it and after the queries (the baseline is taken after importing numpy, FAISS, pyarrow, pandas and
   the search modules, so the difference is the collection's: index, metadata columns, and in
   ``RssFile`` the pages of the memory-mapped vector files that re-ranking touched), and the load
   average at the start and end of the timed loop.

Corpus (the queries are never in the corpus; ``queries_in_corpus`` counts any by content hash):

* ``audio``: real YAMNet frame embeddings of ESC-50 (1024-d; de-duplicated), then random
  mixtures ``a * f_i + (1 - a) * f_j`` of two distinct frames (``a`` uniform) plus Gaussian
  noise of ``--noise`` x the median frame norm, de-duplicated by content hash, in random order
  (the real frames scattered among them). Queries: fresh mixtures. Frames come from
  ``--frames-npy`` (an ``[N, 1024]`` array saved earlier; default ``<workdir>/yamnet_frames.npy``
  when present) or are embedded with ``BenchCache.build(load_esc50(), make_embedder("yamnet"))``
  (``$ESC50_ROOT``, ``$AUDIOSIM_MODELS``) and saved there for the next run.
* ``gaussian``: synthetic, 200 Gaussian clusters (``bench_ann.py``'s recipe); queries: fresh draws.

The collection is kept in ``--workdir`` (``collection-<tag>/``, with its queries, ground truth
and each step's record); ``--reuse`` keeps a collection written earlier with the same settings
(its index is rebuilt only when the index settings changed, or with ``--rebuild-index``).
``make_corpus`` (a raw float file) remains for ``bench_peers.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH_ROWS = 32768
K = 10
WARMUP_SEED = 2
ORDER_SEED = 3


# ---------------------------------------------------------------------- corpus
def corpus_tag(args) -> str:
    return f"{args.source}-n{args.n}-d{args.dim}-s{args.seed}-q{args.queries}" + (
        f"-noise{args.noise:g}" if args.source == "audio" else "")


def corpus_paths(args) -> dict[str, Path]:
    """The raw-file corpus of :func:`make_corpus` (used by ``bench_peers.py``)."""
    tag = corpus_tag(args)
    w = Path(args.workdir)
    return {"x": w / f"corpus-{tag}.f32", "q": w / f"queries-{tag}.npy", "gt": w / f"truth-{tag}.npz",
            "meta": w / f"corpus-{tag}.json"}


def load_frames(args) -> np.ndarray:
    saved = Path(args.frames_npy) if args.frames_npy else Path(args.workdir) / "yamnet_frames.npy"
    if saved.is_file():
        return np.load(saved).astype(np.float32)
    from audiosim.engine.models.embedders import make_embedder
    from audiosim.eval.esc50 import load_esc50
    from audiosim.eval.esc50_cache import BenchCache

    bc = BenchCache.build(load_esc50(args.esc50), make_embedder("yamnet"), cache=Path(args.workdir) / "esc50-cache",
                          progress=True)
    frames = np.concatenate(bc.clip_frames()).astype(np.float32)
    saved.parent.mkdir(parents=True, exist_ok=True)
    np.save(saved, frames)
    return frames


def row_hashes(x: np.ndarray) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in x],
                    dtype=np.uint64)


def _first_dups(h: np.ndarray) -> np.ndarray:
    """True for rows whose hash repeats an earlier row's in the same block."""
    _, first = np.unique(h, return_index=True)
    dup = np.ones(h.size, bool)
    dup[first] = False
    return dup


class Source:
    """The corpus recipe (see the module docstring): ``draw(m, rng)`` gives ``m`` fresh rows."""

    def __init__(self, args, rng: np.random.Generator) -> None:
        self.dim = args.dim
        if args.source == "audio":
            self.frames = np.unique(load_frames(args), axis=0)
            if self.frames.shape[1] != args.dim:
                raise SystemExit(f"YAMNet frames are {self.frames.shape[1]}-d; pass --dim {self.frames.shape[1]} "
                                 "for --source audio")
            self.sigma = args.noise * float(np.median(np.linalg.norm(self.frames, axis=1))) / np.sqrt(args.dim)
            self.centers = None
            self.described = {"frames": len(self.frames), "noise_sigma": self.sigma}
        else:
            self.frames = None
            self.centers = rng.standard_normal((200, args.dim)).astype(np.float32) * 2
            self.described = {"clusters": 200, "synthetic": True}

    def draw(self, m: int, r: np.random.Generator) -> np.ndarray:
        if self.frames is None:
            return (self.centers[r.integers(0, 200, m)] + r.standard_normal((m, self.dim), dtype=np.float32)
                    ).astype(np.float32)
        f = self.frames
        i = r.integers(0, len(f), m)
        j = (i + r.integers(1, len(f), m)) % len(f)  # j != i
        a = r.random(m, dtype=np.float32)[:, None]
        return (a * f[i] + (1 - a) * f[j] + self.sigma * r.standard_normal((m, self.dim), dtype=np.float32)
                ).astype(np.float32)


def generate(args, emit, *, start=None) -> tuple[dict, np.ndarray]:
    """Call ``emit(block)`` for each block of the de-duplicated corpus, in order; returns (description, queries).

    ``start(source, queries)``, when given, is called before the first block."""
    rng = np.random.default_rng(args.seed)
    n = args.n
    src = Source(args, rng)
    queries = src.draw(args.queries, np.random.default_rng(args.seed + 1))
    if start is not None:
        start(src, queries)
    is_frame = np.zeros(n, bool)
    frames = src.frames
    if frames is not None:
        is_frame[rng.choice(n, min(len(frames), n), replace=False)] = True
    frame_rows = iter(frames[rng.permutation(len(frames))[: is_frame.sum()]] if frames is not None else [])
    seen: set[int] = set()
    dropped = 0
    for start in range(0, n, BATCH_ROWS):
        m = min(BATCH_ROWS, n - start)
        block = src.draw(m, rng)
        for r in np.flatnonzero(is_frame[start:start + m]):
            block[r] = next(frame_rows)
        while True:  # de-duplicate by content hash, redrawing repeats
            h = row_hashes(block)
            dup = np.fromiter((x in seen for x in h.tolist()), bool, m) | _first_dups(h)
            if not dup.any():
                break
            dropped += int(dup.sum())
            block[dup] = src.draw(int(dup.sum()), rng)
        seen.update(h.tolist())
        emit(np.ascontiguousarray(block, np.float32))
    meta = {"source": args.source, "n": n, "dim": args.dim, "queries": args.queries, "redrawn_duplicates": dropped,
            "queries_in_corpus": len(set(row_hashes(queries).tolist()) & seen), **src.described}
    return meta, queries


def make_corpus(args, paths: dict[str, Path]) -> dict:
    """Write the corpus as one raw float32 file (``n x dim``) and the held-out queries; returns their description."""
    paths["x"].parent.mkdir(parents=True, exist_ok=True)
    tmp = paths["x"].with_suffix(".tmp")
    with open(tmp, "wb") as f:
        meta, q = generate(args, lambda block: f.write(block.tobytes()))
    os.replace(tmp, paths["x"])
    np.save(paths["q"], q)
    paths["meta"].write_text(json.dumps(meta))
    return meta


# ---------------------------------------------------------------------- process facts
def proc_status() -> dict:
    """Resident memory of this process from /proc/self/status (bytes): VmRSS, VmHWM, RssAnon, RssFile."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


class PeakMemory:
    """The highest ``RssAnon`` (private memory) and ``RssFile`` (mapped file pages) seen while in the ``with``
    block, sampled from /proc/self/status every ``interval`` seconds by a daemon thread (VmHWM has only the sum)."""

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval = interval
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = proc_status()
        for key in self.peak:
            self.peak[key] = max(self.peak[key], now.get(key, 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def to_dict(self) -> dict:
        return {"peak_rss_bytes": proc_status().get("VmHWM"), "peak_anon_bytes": self.peak["RssAnon"],
                "peak_file_bytes": self.peak["RssFile"]}


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_paths(args) -> dict[str, Path]:
    tag = corpus_tag(args) + f"-{args.metric}"
    d = Path(args.workdir) / f"collection-{tag}"
    return {"dir": d, "collection": d / "collection", "queries": d / "queries.npy", "warmup": d / "warmup.npy",
            "truth": d / "truth.npz", "corpus": d / "corpus.json", "steps": d / "steps.json"}


def index_settings(args) -> tuple[str, dict]:
    """``(index_kind, index_params)`` as ``audiosim index --index-kind KIND [--memory-budget B]`` records them."""
    from audiosim.indexes.auto import parse_bytes
    from audiosim.indexes.kinds import check_kind

    check_kind(args.index_kind)
    if args.index_kind != "auto":
        return args.index_kind, {}
    return "auto", {"memory_budget": parse_bytes(args.memory_budget), "target_recall": float(args.target_recall)}


# ---------------------------------------------------------------------- steps (child processes)
def step_write(args) -> dict:
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.store.store import CollectionStore, Rows
    from audiosim.indexes.groundtruth import ExactTopK

    p = bench_paths(args)
    if p["dir"].exists():
        shutil.rmtree(p["dir"])
    p["dir"].mkdir(parents=True)
    t0 = time.perf_counter()
    info = EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=args.dim, window_s=0.96, hop_s=0.48)
    coll = CollectionStore.create(p["collection"], embedder=info, pooling=PoolingSpec.parse("mu"), metric=args.metric)
    pending: list[np.ndarray] = []
    state = {"rows": 0, "truth": None, "truth_s": 0.0, "warmup": None}

    with PeakMemory() as peak, coll.writer(purpose="bench") as w:
        def flush(final: bool) -> None:
            while pending and (final or sum(len(b) for b in pending) >= args.part_rows):
                x = np.concatenate(pending)
                part, rest = x[: args.part_rows], x[args.part_rows:]
                pending[:] = [rest] if len(rest) else []
                start = state["rows"]
                ids = w.append(Rows(path=[f"/synthetic/{i:08d}.wav" for i in range(start, start + len(part))],
                                    content_sha256=[f"{i:064x}" for i in range(start, start + len(part))],
                                    offset_s=np.zeros(len(part)), duration_s=np.ones(len(part)),
                                    label=[None] * len(part), embedding=part))
                ts = time.perf_counter()
                state["truth"].update(ids, part)  # exact neighbours over exactly the rows stored, by stored id
                state["truth_s"] += time.perf_counter() - ts
                state["rows"] += len(part)
                del x, part, rest

        def emit(block: np.ndarray) -> None:
            pending.append(block)
            flush(False)

        def start(src: Source, queries: np.ndarray) -> None:
            state["truth"] = ExactTopK(queries, k=K, metric=args.metric)
            state["warmup"] = src.draw(args.warmup, np.random.default_rng(args.seed + WARMUP_SEED))

        meta, queries = generate(args, emit, start=start)
        flush(True)
    scores, ids = state["truth"].result()
    np.save(p["queries"], queries)
    np.save(p["warmup"], state["warmup"])
    np.savez(p["truth"], scores=scores, ids=ids)
    meta = {**meta, "stored_rows": state["rows"], "parts": len(coll.manifest.parts), "part_rows": args.part_rows}
    p["corpus"].write_text(json.dumps(meta))
    return {"seconds": round(time.perf_counter() - t0, 1), "ground_truth_seconds": round(state["truth_s"], 1),
            **peak.to_dict(), "load_avg_end": load_avg(),
            "collection_disk_bytes": _tree_bytes(p["collection"])}


def _tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())


def step_index(args) -> dict:
    from audiosim.engine.store.compaction import maybe_compact
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore

    p = bench_paths(args)
    kind, params = index_settings(args)
    coll = CollectionStore.open(p["collection"])
    t0 = time.perf_counter()
    with PeakMemory() as peak, coll.writer(purpose="index") as w:  # what index_folder does after embedding
        fields = {}
        if w.manifest.index_kind != kind:
            fields["index_kind"] = kind
        if w.manifest.index_params != params:
            fields["index_params"] = params
        if fields:
            w.set_fields(**fields)
        fresh = w.manifest.index_fresh and not args.rebuild_index
        maybe_compact(w)
        record = ensure_index(w, force=args.rebuild_index)  # force: as `audiosim repair` rebuilds it
    return {"seconds": round(time.perf_counter() - t0, 1), "was_current": bool(fresh), "index_dir": record.dir,
            **peak.to_dict(), "load_avg_end": load_avg()}


def step_warm(args) -> dict:
    """Read every stored vector once through the store, so the page cache holds the vector files (untimed)."""
    from audiosim.engine.store.store import CollectionStore

    coll = CollectionStore.open(bench_paths(args)["collection"])
    ids = coll.items().ids
    t0 = time.perf_counter()
    for start in range(0, ids.size, 65536):
        coll.vectors(ids[start:start + 65536])
    return {"seconds": round(time.perf_counter() - t0, 1), "rows": int(ids.size)}


def vector_cache_fraction(args) -> float | None:
    """The fraction of the collection's vector-file pages in the OS page cache (Linux ``mincore``; None elsewhere).

    Asks the kernel without touching the pages, through the store's own mapping of the files."""
    import ctypes
    import ctypes.util
    import mmap

    from audiosim.engine.store.store import CollectionStore

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        files = CollectionStore.open(bench_paths(args)["collection"]).vector_map().files
    except (OSError, AttributeError):
        return None
    page, resident, total = mmap.PAGESIZE, 0, 0
    for f in files:
        if not f.data.size:
            continue
        start = f.data.ctypes.data - f.data.ctypes.data % page
        length = f.data.ctypes.data + f.data.nbytes - start
        vec = (ctypes.c_ubyte * (-(-length // page)))()
        if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec) != 0:
            return None
        resident += int((np.frombuffer(vec, np.uint8) & 1).sum())
        total += len(vec)
    return round(resident / total, 4) if total else None


def step_search(args) -> dict:
    import faiss
    import pandas  # noqa: F401  (imported before the baseline RSS: reading the metadata columns imports it)
    import pyarrow.parquet  # noqa: F401  (likewise: the libraries' memory, not the collection's)
    from threadpoolctl import threadpool_limits

    import audiosim
    import audiosim.engine.search.library  # noqa: F401  (likewise)
    from audiosim.commands.info import describe
    from audiosim.indexes.groundtruth import recalls_at_k

    p = bench_paths(args)
    queries, warmup = np.load(p["queries"]), np.load(p["warmup"])
    truth = np.load(p["truth"])
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1):
        load_start = load_avg()
        rss_before = proc_status()
        t0 = time.perf_counter()
        coll = audiosim.open_collection(p["collection"])
        searcher = coll.searcher()
        open_s = time.perf_counter() - t0
        rss_open = proc_status()
        for q in warmup:
            searcher.search(vector=q, k=K)
        order = np.random.default_rng(args.seed + ORDER_SEED).permutation(len(queries))
        found = np.full((len(queries), K), -1, np.int64)
        ms = np.empty(len(queries))
        for n, i in enumerate(order):
            q = queries[i]
            t = time.perf_counter()
            hits = searcher.search(vector=q, k=K)
            ms[n] = (time.perf_counter() - t) * 1e3
            ids = [h.id for h in hits]
            found[i, : len(ids)] = ids
        rss_end = proc_status()
        load_end = load_avg()
    recalls = recalls_at_k(found, truth["scores"], truth["ids"], K, metric=args.metric)
    strict = float(np.mean([len(set(a) & set(b[:K])) / K for a, b in zip(found, truth["ids"])]))
    info = describe(coll)
    side = (info["index"] or {}).get("sidecar") or {}
    build = {k: v for k, v in (side.get("build") or {}).items() if k != "curve"}
    return {
        "recall_at_10": round(float(recalls.mean()), 4), "recall_at_10_ids": round(strict, 4),
        "recall_at_10_min": round(float(recalls.min()), 4),
        "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3),
                       "mean": round(float(ms.mean()), 3), "max": round(float(ms.max()), 3)},
        "qps": round(len(ms) / (ms.sum() / 1e3), 1), "timed_queries": len(ms), "warmup_queries": len(warmup),
        "threads": {"faiss": faiss.omp_get_max_threads(), "blas": 1},
        "index": {"kind": side.get("kind"), "params": side.get("params"), "count": side.get("count"),
                  "saved_and_current": bool(info["index"] and info["index"]["fresh"]),
                  "memory_bytes": side.get("memory_bytes"),
                  "file_bytes": sum(f.get("bytes", 0) for f in (side.get("files") or {}).values()),
                  "auto": build or None},
        "open_seconds": round(open_s, 3),
        "rss": {"before_open_bytes": rss_before.get("VmRSS"), "after_open_bytes": rss_open.get("VmRSS"),
                "after_queries_bytes": rss_end.get("VmRSS"),
                "collection_bytes": rss_end.get("VmRSS", 0) - rss_before.get("VmRSS", 0),
                "after_queries_anon_bytes": rss_end.get("RssAnon"), "after_queries_file_bytes": rss_end.get("RssFile"),
                "peak_bytes": rss_end.get("VmHWM")},
        "load_avg_start": load_start, "load_avg_end": load_end,
    }


STEPS = {"write": step_write, "index": step_index, "warm": step_warm, "search": step_search}


# ---------------------------------------------------------------------- driver
def run_step(name: str, args) -> dict:
    """Run one step in a child process (its own peak RSS); its JSON record."""
    cmd = [sys.executable, __file__, *sys.argv[1:], "--step", name]
    print(f"[bench_scale] {name} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"[bench_scale] step {name} failed (exit {proc.returncode}); its error is above")
    out = json.loads(lines[-1])
    print(f"[bench_scale] {name}: {json.dumps(out)[:300]}", file=sys.stderr, flush=True)
    return out


def index_current(args) -> bool:
    """True when the prepared collection's saved index covers its data with this run's index settings."""
    from audiosim.engine.store.store import CollectionStore

    m = CollectionStore.open(bench_paths(args)["collection"]).manifest
    kind, params = index_settings(args)
    return m.index_fresh and m.index_kind == kind and m.index_params == params


def prepared(args) -> bool:
    from audiosim.engine.store.store import CollectionStore

    p = bench_paths(args)
    return all(p[k].is_file() for k in ("corpus", "queries", "warmup", "truth")) and CollectionStore.exists(p["collection"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the collection")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--source", choices=["audio", "gaussian"], default="audio")
    ap.add_argument("--queries", type=int, default=1000, help="timed fresh queries (not in the corpus)")
    ap.add_argument("--warmup", type=int, default=50, help="fresh queries searched before the timed ones")
    ap.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    ap.add_argument("--index-kind", default="auto", help="as `audiosim index --index-kind` (default auto)")
    ap.add_argument("--memory-budget", default="512MiB", help="as `audiosim index --memory-budget` (auto only)")
    ap.add_argument("--target-recall", type=float, default=0.95, help="as `audiosim index --target-recall` (auto only)")
    ap.add_argument("--part-rows", type=int, default=50_000, help="rows per part the writer commits")
    ap.add_argument("--noise", type=float, default=0.05, help="audio: noise std as a fraction of the median frame norm")
    ap.add_argument("--frames-npy", default=None, help="audio: YAMNet frames saved earlier ([N, 1024] .npy)")
    ap.add_argument("--esc50", default=None, help="audio: ESC-50 root (default $ESC50_ROOT)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "audiosim-bench-scale"))
    ap.add_argument("--reuse", action="store_true", help="keep a collection written earlier with these settings")
    ap.add_argument("--rebuild-index", action="store_true", help="rebuild the index even when it is current")
    ap.add_argument("--phase", choices=["all", "prepare", "search"], default="all",
                    help="prepare: write + index (untimed); search: the timed queries on a prepared collection")
    ap.add_argument("--vector-cache", choices=["warm", "as-is"], default="warm",
                    help="warm: read every stored vector once (untimed) before searching, so the page cache holds "
                         "the vector files re-ranking reads; as-is: search with whatever the cache holds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", choices=sorted(STEPS), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.n < 1 or args.dim < 1 or args.queries < 1 or args.part_rows < 1 or args.warmup < 0:
        raise SystemExit("--n, --dim, --queries and --part-rows must be positive, --warmup at least 0")
    from audiosim.errors import AudiosimError

    try:
        index_settings(args)  # a bad --memory-budget fails here, before any work
    except AudiosimError as e:
        raise SystemExit(f"error: {e}") from None
    if args.step:
        print(json.dumps(STEPS[args.step](args)))
        return
    p = bench_paths(args)
    steps = json.loads(p["steps"].read_text()) if p["steps"].is_file() else {}
    if args.phase in ("all", "prepare"):
        if not (args.reuse and prepared(args)):
            steps = {"write": run_step("write", args)}
        built = run_step("index", args)  # ensure_index: a no-op when the saved index covers these settings
        if built["was_current"] and steps.get("index"):
            built = {**steps["index"], "reused": True}  # keep the record of the run that built it
        steps["index"] = built
        p["steps"].write_text(json.dumps(steps))
    if args.phase == "prepare":
        print(json.dumps({"prepared": str(p["collection"]), "steps": steps}, indent=2))
        return
    if not prepared(args) or not index_current(args):
        raise SystemExit(f"no collection prepared with these options at {p['collection']}; run with --phase prepare "
                         "(same options) first")
    warm = run_step("warm", args) if args.vector_cache == "warm" else None
    cached = vector_cache_fraction(args)
    search = run_step("search", args)
    search["vector_cache"] = {"mode": args.vector_cache, "warm_step": warm, "resident_fraction_before": cached,
                              "resident_fraction_after": vector_cache_fraction(args)}
    out = {"n": args.n, "dim": args.dim, "source": args.source, "metric": args.metric, "k": K,
           "index_kind": args.index_kind,
           "memory_budget": index_settings(args)[1].get("memory_budget"), "target_recall": args.target_recall,
           "corpus": json.loads(p["corpus"].read_text()), "collection": str(p["collection"]),
           "write": steps.get("write"), "index_build": steps.get("index"), "search": search,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

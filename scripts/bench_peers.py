"""audiosim through ``Searcher.search`` against peer libraries on the same vectors, the same thread, in one run.

Prints one JSON object on stdout and two Markdown tables on stderr. Example (the issue-22 run)::

    python scripts/bench_peers.py --n 100000 --dim 1024 --source audio --queries 200 \
        --frames-npy FRAMES.npy --lock /tmp/bench.lock

Corpus: ``scripts/bench_scale.py``'s (``audio``: mixtures of real YAMNet frames of ESC-50 plus
noise; ``gaussian``: 200 clusters), written once to ``--workdir``; queries are fresh draws, never
in the corpus. Every row gets one label: ``sel0.1`` (0.1 % of the rows), ``sel2`` (2 %), ``sel20``
(20 %) or ``other``; the filtered runs ask for one of the first three. Ground truth: exact top-10
per query for each filter (numpy, float64 normalisation, cosine).

Contenders, each searched one query at a time on one thread (FAISS and BLAS set to 1 thread; builds use
every core):

* ``audiosim-<kind>``: a real collection (Parquet parts, vector files, the saved index; one
  hard-linked copy per kind, so that every kind's searcher is loaded at once) queried through
  ``Searcher.search(vector=..., k=10[, label=...])``: ``flat``, ``hnsw`` (FAISS), ``hnswlib``
  (hnswlib behind audiosim's interface), ``hnswpca`` (hnswlib over 128 principal components,
  candidates re-ranked exactly from the vector files; swept over (ef_search, rerank) pairs),
  ``hnswpca-mem`` (the same with ``in_memory``: the index holds the full vectors for the re-rank),
  ``ivfpq`` (nlist ~ 2 sqrt(n), m = dim/8, exact re-rank 10 x k from the vector files) and
  ``auto`` (``--memory-budget``, default 64M); the search knob (``ef_search`` / ``nprobe``) is
  swept by setting it on the searcher's loaded index, as the index parameters would; filtered
  searches use the planner. A saved index that is current is reused (its build time not re-measured).
* peers called directly: ``faiss-flat``, ``faiss-hnsw`` (IndexHNSWFlat, the same m=32 and
  efConstruction=80; filters through an IDSelector), ``hnswlib`` (the same M and ef_construction;
  filters through its filter callback), ``usearch`` (connectivity 32, expansion_add 80; no filter
  in its Python search: unfiltered only) and ``lancedb`` (exact scan, filters as a prefilter
  ``where``), each when its package imports. The two graphs are saved in ``--workdir`` and loaded
  by later runs.

First every setting's recall@10 is measured (untimed). Then ``--repeats`` timed rounds: in each,
the contenders take turns point by point -- audiosim's kinds, then each peer, then again -- so a
change of the machine's load during the run falls on all of them alike (``--lock PATH`` holds an
flock on PATH for these rounds only). For each contender and filter: every setting's recall@10
and single-query q/s (the median of its passes), and ``best_qps_at_target``: the highest q/s
whose recall reaches ``--target-recall``. ``ratios`` divides audiosim's best by the best peer's
for each filter. Measured on whatever machine runs it: the JSON names it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

K = 10
LABELS = {"sel0.1": 0.001, "sel2": 0.02, "sel20": 0.2}
FILTERS = (None, "sel0.1", "sel2", "sel20")
EF_VALUES = (16, 24, 32, 48, 64, 96, 128)
NPROBE_VALUES = (4, 8, 16, 32, 64)


def bench_scale():
    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).with_name("bench_scale.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class build_threads:
    """Builds use every core; searches (the measured part) one thread."""

    def __enter__(self):
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)

    def __exit__(self, *exc):
        import faiss

        faiss.omp_set_num_threads(1)


# ---------------------------------------------------------------------- data
def corpus(args):
    bs = bench_scale()
    ns = argparse.Namespace(source=args.source, n=args.n, dim=args.dim, seed=args.seed, queries=args.queries,
                            noise=args.noise, workdir=args.workdir, frames_npy=args.frames_npy, esc50=args.esc50)
    paths = bs.corpus_paths(ns)
    if not (paths["meta"].is_file() and paths["x"].is_file()):
        bs.make_corpus(ns, paths)
    X = np.fromfile(paths["x"], dtype=np.float32).reshape(args.n, args.dim)
    Q = np.load(paths["q"]).astype(np.float32)
    rng = np.random.default_rng(args.seed + 7)
    u = rng.random(args.n)
    labels = np.full(args.n, "other", dtype=object)
    edge = 0.0
    for name, frac in LABELS.items():
        labels[(u >= edge) & (u < edge + frac)] = name
        edge += frac
    return X, Q, labels, json.loads(paths["meta"].read_text())


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ground_truth(X, Q, labels) -> dict:
    """{filter: [nq, K] exact top-K row positions} (cosine)."""
    Qn = unit(Q)
    out = {}
    for f in FILTERS:
        rows = np.arange(len(X)) if f is None else np.flatnonzero(labels == f)
        best_s = np.full((len(Q), K), -np.inf)
        best_i = np.full((len(Q), K), -1, np.int64)
        for s in range(0, rows.size, 20000):
            r = rows[s:s + 20000]
            sc = Qn @ unit(X[r]).T
            cat_s = np.concatenate([best_s, sc], axis=1)
            cat_i = np.concatenate([best_i, np.broadcast_to(r, sc.shape)], axis=1)
            top = np.argsort(-cat_s, axis=1, kind="stable")[:, :K]
            best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
        out[f] = best_i
    return out


def recall(found: list, truth: np.ndarray) -> float:
    """Mean over queries of |found & truth| / |truth| (a filter allowing fewer than K rows has fewer true hits)."""
    out = []
    for f, t in zip(found, truth):
        t = set(t[t >= 0].tolist())
        out.append(len(set(map(int, f)) & t) / max(1, len(t)))
    return float(np.mean(out))


@dataclass
class Contender:
    """One library (or audiosim kind) ready to search: ``run(setting, filter)`` returns ``q -> ids`` (or None)."""

    name: str
    settings: list
    run: Callable
    filters: tuple = FILTERS
    info: dict = field(default_factory=dict)
    unit_queries: bool = False  # the peers are handed unit-length queries (audiosim normalises its own)


def first_pass(c: Contender, Q, truth, args) -> list[dict]:
    """Recall of every setting of ``c`` for every filter (untimed); stops a filter's sweep at recall >= 0.999."""
    points = []
    for f in c.filters:
        for value in c.settings:
            fn = c.run(value, f)
            if fn is None:
                continue
            rec = round(recall([fn(q) for q in (unit(Q).astype(np.float32) if c.unit_queries else Q)], truth[f]), 4)
            points.append({"filter": f, "setting": value, "recall_at_10": rec, "rates": []})
            print(f"[bench_peers] {c.name} filter={f} setting={value}: recall {rec}", file=sys.stderr, flush=True)
            if rec >= max(args.target_recall, 0.999):
                break  # higher settings only cost speed
    return points


def timed_pass(fn, Q, limit_s: float) -> float:
    """Queries per second of one pass over ``Q`` (stopped after ``limit_s`` once 20 queries ran)."""
    t0 = time.perf_counter()
    done = 0
    for q in Q:
        fn(q)
        done += 1
        if done >= 20 and time.perf_counter() - t0 > limit_s:
            break
    return done / (time.perf_counter() - t0)


def interleaved_timing(contenders: list[Contender], points: dict, Q, args) -> None:
    """``args.repeats`` rounds; in each, every contender's every (filter, setting) point gets one timed pass, the
    contenders taking turns point by point (audiosim's kinds, then each peer, then again), so a change of the
    machine's load during the run falls on all of them alike. Fills each point's ``rates``."""
    queue = []
    longest = max((len(points[c.name]) for c in contenders), default=0)
    for i in range(longest):
        for c in contenders:
            if i < len(points[c.name]):
                queue.append((c, points[c.name][i]))
    Qn = unit(Q).astype(np.float32)
    for rep in range(args.repeats):
        for c, p in queue:
            fn = c.run(p["setting"], p["filter"])
            p["rates"].append(timed_pass(fn, Qn if c.unit_queries else Q, args.pass_seconds))
        print(f"[bench_peers] timed round {rep + 1}/{args.repeats} done (load {os.getloadavg()})", file=sys.stderr,
              flush=True)


def summarise(c: Contender, pts: list[dict], args) -> dict:
    out = {}
    for f in c.filters:
        mine = [{"setting": p["setting"], "recall_at_10": p["recall_at_10"], "qps": round(float(np.median(p["rates"])), 1)}
                for p in pts if p["filter"] == f]
        ok = [p for p in mine if p["recall_at_10"] >= args.target_recall]
        best = max(ok, key=lambda p: p["qps"]) if ok else None
        out[str(f)] = {"points": mine, "best_qps_at_target": best["qps"] if best else None,
                       "best_setting": best["setting"] if best else None,
                       "best_recall": best["recall_at_10"] if best else None}
    return out


# ---------------------------------------------------------------------- audiosim
AUDIOSIM_KINDS = {
    "flat": ("flat", {}),
    "hnsw": ("hnsw", {"m": 32, "ef_construction": 80}),
    "hnswlib": ("hnswlib", {"m": 32, "ef_construction": 80}),
    "hnswpca": ("hnswpca", None),  # m 16, ef_construction 80, d = min(128, dim), rerank 2 (the kind's defaults)
    "hnswpca-mem": ("hnswpca", None),  # the same, in_memory: the full vectors held by the index for the re-rank
    "ivfpq": ("ivfpq", None),  # nlist ~ 2 sqrt(n), m = dim / 8, re-rank 10 x k: filled in from the data size
    "auto": ("auto", None),  # --memory-budget
}
# hnswpca: (ef_search, rerank) pairs -- candidates = rerank x k, the graph walks max(ef_search, candidates)
PCA_SETTINGS = ((16, 2), (24, 2), (32, 2), (48, 2), (32, 3), (48, 3), (64, 3), (96, 4))


def _collection_root(args) -> Path:
    return Path(args.workdir) / f"collection-{args.source}-n{args.n}-d{args.dim}-s{args.seed}"


def _make_collection(X, labels, args) -> Path:
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.store.store import CollectionStore, Rows

    root = _collection_root(args)
    if not CollectionStore.exists(root):
        shutil.rmtree(root, ignore_errors=True)
        info = EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=args.dim, window_s=0.96, hop_s=0.48)
        coll = CollectionStore.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), metric="cosine")
        with coll.writer() as w:
            for s in range(0, args.n, 50_000):
                e = min(args.n, s + 50_000)
                w.append(Rows(path=[f"/synthetic/{i:08d}.wav" for i in range(s, e)],
                              content_sha256=[f"{i:064x}" for i in range(s, e)], offset_s=np.zeros(e - s),
                              duration_s=np.full(e - s, 1.0), label=labels[s:e].tolist(), embedding=X[s:e]))
    return root


def _kind_copy(root: Path, name: str) -> Path:
    """A copy of the collection for one kind (its data files hard-linked: parts are never changed in place), so
    every kind's searcher stays loaded at once."""
    from audiosim.engine.store.store import CollectionStore

    dst = root.with_name(f"{root.name}-{name}")
    if not CollectionStore.exists(dst):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(root, dst, copy_function=os.link, ignore=shutil.ignore_patterns(".lock"))
        for f in dst.iterdir():  # the top-level files (the manifest) get their own inodes: only parts are shared
            if f.is_file():
                data = f.read_bytes()
                f.unlink()
                f.write_bytes(data)
    return dst


def audiosim_contenders(X, labels, args) -> list[Contender]:
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore
    from audiosim.indexes.auto import ivf_nlist

    root = _make_collection(X, labels, args)
    out = []
    for name in [k for k in args.audiosim_kinds.split(",") if k]:
        kind, params = AUDIOSIM_KINDS[name]
        if name == "ivfpq":
            params = {"nlist": ivf_nlist(args.n), "niter": 10, "m": args.dim // 8, "rerank": 10}
        elif name in ("hnswpca", "hnswpca-mem"):
            params = {"m": 16, "ef_construction": 80, "d": min(128, args.dim), "rerank": 2,
                      **({"in_memory": True} if name == "hnswpca-mem" else {})}
        elif name == "auto":
            params = {"memory_budget": args.memory_budget}
        coll = CollectionStore.open(_kind_copy(root, name))
        t0 = time.perf_counter()
        with build_threads():
            with coll.writer() as w:
                if w.manifest.index_kind != kind or w.manifest.index_params != params:
                    w.set_fields(index_kind=kind, index_params=params)
                rebuilt = not w.manifest.index_fresh
                ensure_index(w)
        build_s = time.perf_counter() - t0
        searcher = Searcher(coll.root)
        vindex = searcher._state.index.index
        knob = vindex.KNOB
        if vindex.KIND == "hnswpca" and name != "auto":  # hnswpca, hnswpca-mem
            settings = list(PCA_SETTINGS)
        else:
            settings = [None] if knob is None or name == "auto" else (EF_VALUES if knob == "ef_search" else NPROBE_VALUES)

        def run(value, f, vindex=vindex, knob=knob, searcher=searcher):
            if isinstance(value, tuple):  # hnswpca: (ef_search, rerank)
                vindex.set_knob(value[0])
                vindex.rerank = value[1]
            elif value is not None:
                vindex.set_knob(value)  # the loaded index's knob: what the index parameters would save
            if f is None:
                return lambda q: [h.id for h in searcher.search(vector=q, k=K)]
            return lambda q: [h.id for h in searcher.search(vector=q, k=K, label=f)]

        sidecar = json.loads((coll.root / coll.manifest.index.dir / "index.json").read_text())
        out.append(Contender(f"audiosim-{name}", settings, run, info={
            "build_s": round(build_s, 1) if rebuilt else None, "reused_saved_index": not rebuilt,
            "saved_build": sidecar.get("build") and {k: v for k, v in sidecar["build"].items() if k != "curve"},
            "kind": vindex.KIND, "params": vindex.params(), "memory_bytes": int(vindex.memory_bytes())}))
    return out


# ---------------------------------------------------------------------- peers
def peer_contenders(X, labels, args) -> list[Contender]:
    import faiss

    Xn = unit(X).astype(np.float32)
    masks = {f: np.flatnonzero(labels == f) for f in LABELS}
    out = []
    wanted = set(args.peers.split(","))
    cache = Path(args.workdir) / f"peers-{args.source}-n{args.n}-d{args.dim}-s{args.seed}"
    cache.mkdir(parents=True, exist_ok=True)

    if "faiss-flat" in wanted:
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(Xn)
        sels = {f: faiss.IDSelectorBatch(masks[f].astype(np.int64)) for f in LABELS}

        def run_flat(value, f, flat=flat, sels=sels):
            params = None if f is None else faiss.SearchParameters(sel=sels[f])
            return lambda q: flat.search(q[None], K, params=params)[1][0]

        out.append(Contender("faiss-flat", [None], run_flat, unit_queries=True))

    if "faiss-hnsw" in wanted:
        path = cache / "faiss-hnsw-m32-efc80.index"
        t0 = time.perf_counter()
        loaded = path.is_file()
        if loaded:
            h = faiss.read_index(str(path))
        else:
            h = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
            h.hnsw.efConstruction = 80
            with build_threads():
                h.add(Xn)
            faiss.write_index(h, str(path))
        build_s = time.perf_counter() - t0
        sels = {f: faiss.IDSelectorBatch(masks[f].astype(np.int64)) for f in LABELS}

        def run_fh(value, f, h=h, sels=sels):
            params = faiss.SearchParametersHNSW(efSearch=value, sel=None if f is None else sels[f])
            return lambda q: h.search(q[None], K, params=params)[1][0]

        out.append(Contender("faiss-hnsw", list(EF_VALUES + (256, 1024)), run_fh, unit_queries=True,
                             info={"build_s": None if loaded else round(build_s, 1), "loaded_saved_graph": loaded}))

    if "hnswlib" in wanted:
        try:
            import hnswlib
        except ImportError:
            hnswlib = None
        if hnswlib is not None:
            path = cache / "hnswlib-m32-efc80.bin"
            t0 = time.perf_counter()
            p = hnswlib.Index(space="ip", dim=args.dim)
            loaded = path.is_file()
            if loaded:
                p.load_index(str(path), max_elements=args.n)
            else:
                p.init_index(max_elements=args.n, M=32, ef_construction=80, random_seed=100)
                p.add_items(Xn, np.arange(args.n), num_threads=os.cpu_count() or 1)
                p.save_index(str(path))
            build_s = time.perf_counter() - t0
            allowed = {f: set(masks[f].tolist()) for f in LABELS}

            def run_hl(value, f, p=p, allowed=allowed):
                p.set_ef(value)
                filt = None if f is None else allowed[f].__contains__

                def q_(q):
                    try:
                        return p.knn_query(q[None], k=K, num_threads=1, filter=filt)[0][0]
                    except RuntimeError:  # hnswlib found fewer than K allowed neighbours
                        return []
                return q_

            out.append(Contender("hnswlib", list(EF_VALUES + (256, 1024)), run_hl, unit_queries=True,
                                 info={"build_s": None if loaded else round(build_s, 1), "loaded_saved_graph": loaded}))

    if "usearch" in wanted:
        try:
            from usearch.index import Index as UIndex
        except ImportError:
            UIndex = None
        if UIndex is not None:
            t0 = time.perf_counter()
            u = UIndex(ndim=args.dim, metric="ip", dtype="f32", connectivity=32, expansion_add=80)
            u.add(np.arange(args.n), Xn, threads=os.cpu_count() or 1)
            build_s = time.perf_counter() - t0

            def run_us(value, f, u=u):
                if f is not None:
                    return None  # no filter in usearch's Python search
                u.expansion_search = value
                return lambda q: u.search(q, K, threads=1).keys

            out.append(Contender("usearch", list(EF_VALUES + (256,)), run_us, filters=(None,), unit_queries=True,
                                 info={"build_s": round(build_s, 1)}))

    if "lancedb" in wanted:
        try:
            import lancedb
            import pyarrow as pa
        except ImportError:
            lancedb = None
        if lancedb is not None:
            d = tempfile.mkdtemp(prefix="lance-", dir=args.workdir)
            db = lancedb.connect(d)
            table = db.create_table("t", pa.table({"id": pa.array(np.arange(args.n)), "label": pa.array(labels.tolist()),
                                                   "vector": pa.FixedSizeListArray.from_arrays(pa.array(Xn.ravel()),
                                                                                               args.dim)}))

            def run_ld(value, f, table=table):
                def q_(q):
                    s = table.search(q).metric("dot").limit(K).select(["id", "_distance"])  # _distance named: no warning per query
                    if f is not None:
                        s = s.where(f"label = '{f}'", prefilter=True)
                    return s.to_arrow()["id"].to_numpy()
                return q_

            out.append(Contender("lancedb-exact", [None], run_ld, unit_queries=True))
    return out


def tables(out: dict) -> str:
    """The results as two Markdown tables: every contender's best point per filter, and audiosim / best peer."""
    cols = [str(f) for f in FILTERS]
    head = ["no filter" if f == "None" else f"{out['selectivity'][f] * 100:g} %" for f in cols]
    lines = ["| contender | build s | " + " | ".join(head) + " |", "|---" * (len(cols) + 2) + "|"]
    for name, c in out["contenders"].items():
        cells = []
        for f in cols:
            r = c["results"].get(f)
            if r is None:
                cells.append("–")
            elif r["best_qps_at_target"] is None:
                best = max(r["points"], key=lambda p: p["recall_at_10"], default=None)
                cells.append("never >= target" + (f": best recall {best['recall_at_10']:.3f} ({best['setting']}, "
                                                   f"{best['qps']:.0f} q/s)" if best else ""))
            else:
                cells.append(f"{r['best_qps_at_target']:.0f} q/s, recall {r['best_recall']:.3f}"
                             + ("" if r["best_setting"] is None else f" ({r['best_setting']})"))
        build = c.get("info", {}).get("build_s")
        lines.append(f"| {name} | {'–' if build is None else build} | " + " | ".join(cells) + " |")
    lines += ["", "| filter | audiosim best q/s | best peer q/s | ratio |", "|---|---|---|---|"]
    for f, h in zip(cols, head):
        r = out["ratios"][f]
        ours = "–" if r["audiosim_best_qps"] is None else f"{r['audiosim_best_qps']:.0f} ({r['audiosim_best']})"
        peer = "–" if r["peer_best_qps"] is None else f"{r['peer_best_qps']:.0f} ({r['peer_best']})"
        lines.append(f"| {h} | {ours} | {peer} | {'–' if r['ratio'] is None else r['ratio']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--source", choices=["audio", "gaussian"], default="audio")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--frames-npy", default=None, help="audio: YAMNet frames saved earlier ([N, 1024] .npy)")
    ap.add_argument("--esc50", default=None)
    ap.add_argument("--memory-budget", default="64M", help="for audiosim's auto kind")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (the median pass of each point is reported)")
    ap.add_argument("--pass-seconds", type=float, default=3.0, help="time limit of one timed pass")
    ap.add_argument("--audiosim-kinds", default="flat,hnsw,hnswlib,hnswpca,hnswpca-mem,ivfpq,auto")
    ap.add_argument("--peers", default="faiss-flat,faiss-hnsw,hnswlib,usearch,lancedb")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "audiosim-bench-peers"))
    ap.add_argument("--lock", default=None, metavar="PATH",
                    help="hold an exclusive flock on PATH during the timed rounds only (e.g. /tmp/bench.lock)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    faiss.omp_set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    X, Q, labels, meta = corpus(args)
    truth = ground_truth(X, Q, labels)
    prep_s = time.perf_counter() - t0
    out = {"n": args.n, "dim": args.dim, "source": args.source, "queries": args.queries, "k": K,
           "target_recall": args.target_recall, "corpus": meta, "prep_s": round(prep_s, 1),
           "selectivity": {f: round(float((labels == f).mean()), 5) for f in LABELS},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
                       "threads": 1}, "contenders": {}}
    contenders = audiosim_contenders(X, labels, args) + peer_contenders(X, labels, args)
    points = {c.name: first_pass(c, Q, truth, args) for c in contenders}
    lock = open(args.lock, "a") if args.lock else None
    if lock is not None:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        out["machine"]["load_avg_timed_start"] = os.getloadavg()
        t1 = time.perf_counter()
        interleaved_timing(contenders, points, Q, args)
        out["timed_s"] = round(time.perf_counter() - t1, 1)
        out["machine"]["load_avg_timed_end"] = os.getloadavg()
    finally:
        if lock is not None:
            lock.close()
    for c in contenders:
        out["contenders"][c.name] = {"info": c.info, "results": summarise(c, points[c.name], args)}
    out["machine"]["load_avg_end"] = os.getloadavg()
    ratios = {}
    for f in FILTERS:
        best = {name: c["results"].get(str(f), {}).get("best_qps_at_target") for name, c in out["contenders"].items()}
        mine = {n: v for n, v in best.items() if n.startswith("audiosim-") and v}
        peers = {n: v for n, v in best.items() if not n.startswith("audiosim-") and v}
        a = max(mine, key=mine.get) if mine else None
        p = max(peers, key=peers.get) if peers else None
        ratios[str(f)] = {"audiosim_best_qps": mine.get(a), "audiosim_best": a, "peer_best_qps": peers.get(p),
                          "peer_best": p, "ratio": round(mine[a] / peers[p], 3) if a and p else None,
                          "best": {n: v for n, v in best.items() if v}}
    out["ratios"] = ratios
    print(tables(out), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

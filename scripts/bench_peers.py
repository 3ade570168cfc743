"""audiosim through ``Searcher.search`` against peer libraries on the same vectors, the same thread, in one run.

Prints one JSON object. Example (the issue-22 run)::

    python scripts/bench_peers.py --n 100000 --dim 1024 --source audio --queries 300

Corpus: ``scripts/bench_scale.py``'s (``audio``: mixtures of real YAMNet frames of ESC-50 plus
noise; ``gaussian``: 200 clusters), written once to ``--workdir``; queries are fresh draws, never
in the corpus. Every row gets one label: ``sel0.1`` (0.1 % of the rows), ``sel2`` (2 %), ``sel20``
(20 %) or ``other``; the filtered runs ask for one of the first three. Ground truth: exact top-10
per query for each filter (numpy, float64 normalisation, cosine).

Contenders, each searched one query at a time on one thread (FAISS and BLAS set to 1 thread; builds use
every core):

* ``audiosim-<kind>``: a real collection (Parquet parts, vector files, the saved index) queried
  through ``Searcher.search(vector=..., k=10[, label=...])``: ``flat``, ``hnsw`` (FAISS),
  ``hnswlib`` (hnswlib behind audiosim's interface), ``ivfpq`` (nlist ~ 2 sqrt(n), m = dim/8,
  exact re-rank 10 x k from the vector files) and ``auto`` (``--memory-budget``, default 64M);
  the search knob (``ef_search`` / ``nprobe``) is swept by setting it on the searcher's loaded
  index, as ``audiosim index --index-param`` would; filtered searches use the planner.
* peers called directly: ``faiss-flat``, ``faiss-hnsw`` (IndexHNSWFlat, the same m=32 and
  efConstruction=80; filters through an IDSelector), ``hnswlib`` (the same M and ef_construction;
  filters through its filter callback), ``usearch`` (connectivity 32, expansion_add 80; no filter
  in its Python search: unfiltered only) and ``lancedb`` (exact scan, filters as a prefilter
  ``where``), each when its package imports.

For each contender and filter: every knob value's recall@10 and single-query q/s (the median of
``--repeats`` timed passes), and ``best_qps_at_target``: the highest q/s whose recall reaches
``--target-recall``. ``ratios`` divides audiosim's best by the best peer's for each filter.
Measured on whatever machine runs it: the JSON names it.
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
from pathlib import Path

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


def timed(fn, Q, repeats: int, limit_s: float) -> tuple[list, float]:
    """(results of the first pass, median q/s over ``repeats`` passes of at most ``limit_s`` each)."""
    first = [fn(q) for q in Q]
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = 0
        for q in Q:
            fn(q)
            done += 1
            if time.perf_counter() - t0 > limit_s and done >= 20:
                break
        rates.append(done / (time.perf_counter() - t0))
    return first, float(np.median(rates))


def sweep(name, settings, run, Q, truth, args, *, filters=FILTERS) -> dict:
    """{filter: {"points": [...], "best_qps_at_target": q/s or None}} for one contender."""
    out = {}
    for f in filters:
        points = []
        for value in settings:
            fn = run(value, f)
            if fn is None:
                continue
            found, qps = timed(fn, Q, args.repeats, args.pass_seconds)
            points.append({"setting": value, "recall_at_10": round(recall(found, truth[f]), 4), "qps": round(qps, 1)})
            print(f"[bench_peers] {name} filter={f} setting={value}: {points[-1]}", file=sys.stderr, flush=True)
            if points[-1]["recall_at_10"] >= max(args.target_recall, 0.999):
                break  # higher settings only cost speed
        ok = [p["qps"] for p in points if p["recall_at_10"] >= args.target_recall]
        out[str(f)] = {"points": points, "best_qps_at_target": max(ok) if ok else None}
    return out


# ---------------------------------------------------------------------- audiosim
def audiosim_contenders(X, Q, labels, truth, args) -> dict:
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore, Rows
    from audiosim.indexes.auto import ivf_nlist

    root = Path(args.workdir) / f"collection-{args.source}-n{args.n}-d{args.dim}-s{args.seed}"
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
    coll = CollectionStore.open(root)
    kinds = {"flat": ("flat", {}), "hnsw": ("hnsw", {"m": 32, "ef_construction": 80}),
             "hnswlib": ("hnswlib", {"m": 32, "ef_construction": 80}),
             "ivfpq": ("ivfpq", {"nlist": ivf_nlist(args.n), "niter": 10, "m": args.dim // 8, "rerank": 10}),
             "auto": ("auto", {"memory_budget": args.memory_budget})}
    out = {}
    for name in args.audiosim_kinds.split(","):
        kind, params = kinds[name]
        t0 = time.perf_counter()
        with build_threads():
            with coll.writer() as w:
                w.set_fields(index_kind=kind, index_params=params)
                ensure_index(w)
        build_s = time.perf_counter() - t0
        searcher = Searcher(root)
        vindex = searcher._state.index.index
        knob = vindex.KNOB
        own = getattr(vindex, knob) if knob else None
        settings = [None] if knob is None or name == "auto" else (EF_VALUES if knob == "ef_search" else NPROBE_VALUES)

        def run(value, f, vindex=vindex, knob=knob, searcher=searcher):
            if value is not None:
                vindex.set_knob(value)  # the loaded index's knob: what --index-param ef_search=... saves
            if f is None:
                return lambda q: [h.id for h in searcher.search(vector=q, k=K)]
            return lambda q: [h.id for h in searcher.search(vector=q, k=K, label=f)]

        res = sweep(f"audiosim-{name}", settings, run, Q, truth, args)
        if knob and own is not None:
            vindex.set_knob(own)
        out[f"audiosim-{name}"] = {"build_s": round(build_s, 1), "kind": vindex.KIND, "params": vindex.params(),
                                   "auto": {k: v for k, v in vindex.build_info.items() if k != "curve"} or None,
                                   "results": res}
    return out


# ---------------------------------------------------------------------- peers
def peer_contenders(X, Q, labels, truth, args) -> dict:
    import faiss

    Xn = unit(X).astype(np.float32)
    Qn = unit(Q).astype(np.float32)
    masks = {f: np.flatnonzero(labels == f) for f in LABELS}
    out = {}
    wanted = set(args.peers.split(","))

    if "faiss-flat" in wanted:
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(Xn)
        sels = {f: faiss.IDSelectorBatch(masks[f].astype(np.int64)) for f in LABELS}

        def run_flat(value, f):
            params = None if f is None else faiss.SearchParameters(sel=sels[f])
            return lambda q: flat.search(q[None], K, params=params)[1][0]

        out["faiss-flat"] = {"results": sweep("faiss-flat", [None], run_flat, Qn, truth, args)}
        del flat

    if "faiss-hnsw" in wanted:
        t0 = time.perf_counter()
        h = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = 80
        with build_threads():
            h.add(Xn)
        build_s = time.perf_counter() - t0
        sels = {f: faiss.IDSelectorBatch(masks[f].astype(np.int64)) for f in LABELS}

        def run_fh(value, f):
            params = faiss.SearchParametersHNSW(efSearch=value, sel=None if f is None else sels[f])
            return lambda q: h.search(q[None], K, params=params)[1][0]

        out["faiss-hnsw"] = {"build_s": round(build_s, 1), "results": sweep("faiss-hnsw", EF_VALUES + (256, 1024),
                                                                              run_fh, Qn, truth, args)}
        del h

    if "hnswlib" in wanted:
        try:
            import hnswlib
        except ImportError:
            hnswlib = None
        if hnswlib is not None:
            t0 = time.perf_counter()
            p = hnswlib.Index(space="ip", dim=args.dim)
            p.init_index(max_elements=args.n, M=32, ef_construction=80, random_seed=100)
            p.add_items(Xn, np.arange(args.n), num_threads=os.cpu_count() or 1)
            build_s = time.perf_counter() - t0
            allowed = {f: set(masks[f].tolist()) for f in LABELS}

            def run_hl(value, f):
                p.set_ef(value)
                filt = None if f is None else allowed[f].__contains__

                def q_(q):
                    try:
                        return p.knn_query(q[None], k=K, num_threads=1, filter=filt)[0][0]
                    except RuntimeError:  # hnswlib found fewer than K allowed neighbours
                        return []
                return q_

            out["hnswlib"] = {"build_s": round(build_s, 1),
                              "results": sweep("hnswlib", EF_VALUES + (256, 1024), run_hl, Qn, truth, args)}
            del p

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

            def run_us(value, f):
                if f is not None:
                    return None  # no filter in usearch's Python search
                u.expansion_search = value
                return lambda q: u.search(q, K, threads=1).keys

            out["usearch"] = {"build_s": round(build_s, 1),
                              "results": sweep("usearch", EF_VALUES + (256,), run_us, Qn, truth, args, filters=(None,))}
            del u

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

            def run_ld(value, f):
                def q_(q):
                    s = table.search(q).metric("dot").limit(K).select(["id"])
                    if f is not None:
                        s = s.where(f"label = '{f}'", prefilter=True)
                    return s.to_arrow()["id"].to_numpy()
                return q_

            out["lancedb-exact"] = {"results": sweep("lancedb-exact", [None], run_ld, Qn, truth, args)}
            shutil.rmtree(d, ignore_errors=True)
    return out


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
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per setting (the median is reported)")
    ap.add_argument("--pass-seconds", type=float, default=3.0, help="time limit of one timed pass")
    ap.add_argument("--audiosim-kinds", default="flat,hnsw,hnswlib,ivfpq,auto")
    ap.add_argument("--peers", default="faiss-flat,faiss-hnsw,hnswlib,usearch,lancedb")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "audiosim-bench-peers"))
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
    if args.audiosim_kinds:
        out["contenders"].update(audiosim_contenders(X, Q, labels, truth, args))
    if args.peers:
        out["contenders"].update(peer_contenders(X, Q, labels, truth, args))
    out["machine"]["load_avg_end"] = os.getloadavg()
    ratios = {}
    for f in FILTERS:
        best = {name: c["results"].get(str(f), {}).get("best_qps_at_target") for name, c in out["contenders"].items()}
        ours = max((v for n, v in best.items() if n.startswith("audiosim-") and v), default=None)
        peers = max((v for n, v in best.items() if not n.startswith("audiosim-") and v), default=None)
        ratios[str(f)] = {"audiosim_best_qps": ours, "peer_best_qps": peers,
                          "ratio": round(ours / peers, 3) if ours and peers else None,
                          "best": {n: v for n, v in best.items() if v}}
    out["ratios"] = ratios
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

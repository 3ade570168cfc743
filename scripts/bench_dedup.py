"""Near-duplicate detection on real clips: pair precision and recall against the threshold, and dedup at scale.

**Copies** (default): ``--originals`` ESC-50 clips each get one copy made the way sound libraries
hold one recording several times -- a lossy re-encode (``ogg`` Vorbis, ``mp3``), a lossless one
(``flac``), resampling (``resample`` to 44.1/22.05/8 kHz), a trim of up to 0.5 s at either end
(``trim``), a gain of ±6 dB (``gain``), light noise at -50 dBFS (``noise``) -- chosen in turn; the
copies, their originals and ``--others`` further ESC-50 clips (different source recordings) go
into one folder, indexed with ``audiosim.index_folder`` (default settings: YAMNet, mu, silence
left out), and ``find_duplicates`` (what ``Collection.duplicates`` runs) at every ``--thresholds``,
verified (the default: candidates from the vector graph, each checked by comparing the two files'
audio) and, with ``--no-verify-too``, vector-only at every ``--vector-thresholds``. A predicted
pair is two files of one group; it is true when it is an (original, copy) pair.
``--distribution`` adds the audio scores of every vector-graph pair at cosine >= 0.5 (10
neighbours), by kind of pair: where the threshold sits.

``core_recall``: the issue's target set (re-encodes, resampling, trims, gain); the noisy copies
are reported apart (``recall_by_copy.noise``); ``recall`` counts all. Precision counts every predicted pair that
is not an (original, copy) pair as false, except pairs of two ESC-50 clips cut from one source
recording (same freesound id, ``{fold}-{src}-{take}-{target}``): ``--same-source`` further clips
are other takes of an original's source recording; such pairs are counted apart
(``same_source``: how many exist, how many were grouped) and in neither precision nor recall.

**Scale** (``--scale N``): N random ``--dim``-d vectors (plus N/100 planted near copies) stored in
a collection through the store's writer (the paths name no file, so verification falls back to
the vector score, as it does for moved files), then ``Collection.duplicates()`` timed.

Prints JSON (with the load average before and after). Needs ESC-50 (``$ESC50_ROOT``) and YAMNet
weights (``$AUDIOSIM_MODELS``)::

    python scripts/bench_dedup.py --originals 140 --others 300 --same-source 40
    python scripts/bench_dedup.py --scale 100000 --dim 1024

``--workdir DIR`` keeps the folder and the collection; a later run with the same clip options
reuses them (no re-indexing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
TRANSFORMS = ("ogg", "mp3", "flac", "resample", "trim", "gain", "noise")
CORE = ("ogg", "mp3", "flac", "resample", "trim", "gain")  # the target set; noise is reported apart


def make_copy(x: np.ndarray, sr: int, kind: str, rng) -> tuple[np.ndarray, int, str]:
    """(samples, rate, file extension) of a copy of ``x``."""
    from audiosim.engine.audio.decode import resample

    if kind in ("ogg", "mp3", "flac"):
        return x, sr, kind
    if kind == "resample":
        target = int(rng.choice([44100, 22050, 8000]))
        return resample(x, orig_sr=sr, target_sr=target), target, "wav"
    if kind == "trim":
        a, b = (int(rng.uniform(0, 0.5) * sr) for _ in range(2))
        return x[a: x.size - b], sr, "wav"
    if kind == "gain":
        return np.clip(x * 10 ** (float(rng.choice([-6.0, 6.0])) / 20), -1, 1), sr, "wav"
    if kind == "noise":
        return (x + 10 ** (-50 / 20) * rng.standard_normal(x.size)).astype(np.float32), sr, "wav"
    raise ValueError(kind)


def write(path: Path, x: np.ndarray, sr: int, ext: str) -> None:
    import soundfile as sf

    fmt = {"ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"), "flac": ("FLAC", "PCM_16"),
           "wav": ("WAV", "FLOAT")}[ext]
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), sr, format=fmt[0], subtype=fmt[1])
    path.with_suffix("." + ext).write_bytes(buf.getvalue())


def source_id(path: str) -> str:
    return Path(path).stem.split("-")[1] if Path(path).stem.count("-") >= 2 else Path(path).stem


def load_avg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def build_folder(args, folder: Path) -> dict:
    """Write the clips and copies into ``folder``; returns the truth: pairs, copy kinds, source ids."""
    import soundfile as sf

    from audiosim.eval.esc50 import load_esc50

    esc = load_esc50(args.esc50)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(esc.clips))
    takes: dict[str, list] = {}
    for c in esc.clips:
        takes.setdefault(source_id(c.path), []).append(c)
    truth, kinds, sources, used, chosen = [], {}, {}, set(), []
    for i in order:  # originals and others from distinct source recordings
        c = esc.clips[int(i)]
        if source_id(c.path) in used:
            continue
        used.add(source_id(c.path))
        chosen.append(c)
        if len(chosen) == args.originals + args.others:
            break
    extra = [next(t for t in takes[source_id(c.path)] if t.path != c.path)  # another take of an original's recording
             for c in chosen[:args.originals] if len(takes[source_id(c.path)]) > 1][:args.same_source]
    folder.mkdir(parents=True)
    for n, c in enumerate(chosen + extra):
        name = Path(c.path).name
        shutil.copy(c.path, folder / name)
        sources[name] = source_id(c.path)
        if n < args.originals:
            x, sr = sf.read(c.path, dtype="float32")
            x = x.mean(axis=1) if x.ndim == 2 else x
            kind = TRANSFORMS[n % len(TRANSFORMS)]
            y, ysr, ext = make_copy(x, sr, kind, rng)
            copy = folder / f"copy_{kind}_{Path(name).stem}"
            write(copy, y, ysr, ext)
            cname = copy.with_suffix("." + ext).name
            truth.append(sorted((name, cname)))
            kinds[cname] = kind
            sources[cname] = source_id(c.path)
    return {"truth": truth, "kinds": kinds, "sources": sources, "same_source_clips": len(extra)}


def prepared(args, work: Path) -> tuple[dict, float | None]:
    """(truth, indexing seconds or None when an earlier run's collection in ``work`` was reused)."""
    import audiosim

    key = {"originals": args.originals, "others": args.others, "same_source": args.same_source, "seed": args.seed}
    meta_file = work / "bench_dedup.json"
    if meta_file.is_file() and (work / "coll").is_dir():
        meta = json.loads(meta_file.read_text())
        if meta.get("key") == key:
            return meta, None
    shutil.rmtree(work / "clips", ignore_errors=True)
    shutil.rmtree(work / "coll", ignore_errors=True)
    meta = build_folder(args, work / "clips")
    t0 = time.perf_counter()
    report = audiosim.index_folder(work / "clips", work / "coll", label_from="none")
    seconds = time.perf_counter() - t0
    meta.update(key=key, files=report.vectors, failed=len(report.failures))
    meta_file.write_text(json.dumps(meta))
    return meta, seconds


def _counts(dup) -> dict | None:
    """The verification's counts (the unreadable files' messages left out)."""
    if dup.verification is None:
        return None
    return {k: v for k, v in dup.verification.to_dict().items() if k != "unreadable"}


def score(dup, meta: dict) -> dict:
    """Pair precision/recall of one report against the truth (see the module docstring)."""
    truth = {frozenset(p) for p in meta["truth"]}
    kinds, sources = meta["kinds"], meta["sources"]
    predicted = set()
    for g in dup.groups:
        names = [Path(m.path).name for m in g.members]
        predicted |= {frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1:]}
    same_source = {p for p in predicted if p not in truth and len({sources[n] for n in p}) == 1}
    scored = predicted - same_source
    tp = scored & truth

    def kind_of(pair):
        return next(kinds[n] for n in pair if n in kinds)

    core_truth = {p for p in truth if kind_of(p) in CORE}
    by_kind = {k: round(sum(kind_of(p) == k for p in tp) / max(1, sum(kind_of(p) == k for p in truth)), 3)
               for k in TRANSFORMS}
    names = list(sources)
    same_source_all = sum(1 for i, a in enumerate(names) for b in names[i + 1:]
                          if sources[a] == sources[b] and frozenset((a, b)) not in truth)
    return {"precision": round(len(tp) / len(scored), 4) if scored else 1.0,
            "recall": round(len(tp) / len(truth), 4),
            "core_recall": round(len(tp & core_truth) / max(1, len(core_truth)), 4),
            "false_pairs": len(scored - truth), "recall_by_copy": by_kind,
            "same_source": {"pairs": same_source_all, "grouped": len(same_source)},
            "false_examples": sorted(sorted(p) for p in scored - truth)[:5],
            "missed": sorted(sorted(p) for p in truth - tp)[:12]}


def copies_case(args, work: Path) -> dict:
    import audiosim
    from audiosim.engine.search.dedup import find_duplicates

    meta, index_s = prepared(args, work)
    coll = audiosim.open_collection(work / "coll")
    modes = [("verified", True)] + ([("vector", False)] if args.no_verify_too else [])
    out = {"files": meta["files"], "failed": meta["failed"], "originals": args.originals, "others": args.others,
           "same_source_clips": meta["same_source_clips"], "true_pairs": len(meta["truth"]),
           "index_seconds": round(index_s, 1) if index_s is not None else "reused", "load_avg_before": load_avg()}
    for mode, verify in modes:
        rows = []
        thresholds = args.thresholds if verify else args.vector_thresholds
        for th in thresholds:
            t = time.perf_counter()
            dup = find_duplicates(coll, threshold=th, verify=verify)  # what Collection.duplicates runs
            seconds = time.perf_counter() - t
            row = {"threshold": th, **score(dup, meta), "seconds": round(seconds, 2)}
            if verify:
                row["verification"] = _counts(dup)
            rows.append(row)
        out[mode] = rows
    if args.distribution:
        out["score_distribution"] = distribution(coll, meta)
    out["load_avg_after"] = load_avg()
    return out


def distribution(coll, meta: dict) -> dict:
    """The audio comparison's scores of every vector-graph pair at cosine >= 0.5 among 10 neighbours, by kind of pair.

    Shows where the threshold sits: (original, copy) pairs, cuts of one source recording, other pairs.
    """
    from audiosim.engine.search.dedup import neighbour_pairs
    from audiosim.engine.search.verify import check_pairs

    items = coll.items()
    ids, X = coll.embeddings()
    V = np.empty_like(X)
    V[items.positions(ids)] = X
    names = [Path(items.paths[int(c)]).name for c in items.path_code]
    pairs = neighbour_pairs(V, threshold=0.5, k=10, device="cpu")
    checked = check_pairs([[items.paths[int(c)]] for c in items.path_code], pairs.i, pairs.j)
    truth = {frozenset(p) for p in meta["truth"]}
    kinds = {"copy": [], "same_source": [], "other": []}
    for a, b, sc in zip(pairs.i, pairs.j, checked.score):
        pair = frozenset((names[a], names[b]))
        kind = ("copy" if pair in truth else
                "same_source" if meta["sources"][names[a]] == meta["sources"][names[b]] else "other")
        kinds[kind].append(sc)
    out = {}
    for kind, v in kinds.items():
        v = np.asarray(v, dtype=np.float64)
        done = v[np.isfinite(v)]
        out[kind] = {"pairs": int(v.size), "not_compared": int((~np.isfinite(v)).sum())}
        if done.size:
            out[kind].update({q: round(float(np.quantile(done, x)), 4) for q, x in
                              (("min", 0), ("p01", 0.01), ("median", 0.5), ("p99", 0.99), ("max", 1))})
            out[kind]["at_or_above_0.95"] = int((done >= 0.95).sum())
    return out


def scale_case(args, work: Path) -> dict:
    import audiosim
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.store import store

    rng = np.random.default_rng(args.seed)
    n, d = args.scale, args.dim
    X = rng.standard_normal((n, d)).astype(np.float32)
    planted = n // 100
    src = rng.choice(n - planted, planted, replace=False)
    X[n - planted:] = X[src] + 0.1 * rng.standard_normal((planted, d)).astype(np.float32)
    info = EmbedderInfo(name="synthetic", version="1", sample_rate=16000, dim=d, window_s=1.0, hop_s=1.0)
    root = work / "scale"
    c = store.CollectionStore.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), metric="cosine")
    with c.writer(purpose="bench") as w:
        for a in range(0, n, 50_000):
            b = min(a + 50_000, n)
            w.append(store.Rows(path=[f"/synthetic/{i}.wav" for i in range(a, b)],
                                content_sha256=[f"{i:064x}" for i in range(a, b)], offset_s=np.zeros(b - a),
                                duration_s=np.ones(b - a), label=[None] * (b - a), embedding=X[a:b]))
    coll = audiosim.open_collection(root)
    before = load_avg()
    t = time.perf_counter()
    dup = coll.duplicates()
    seconds = time.perf_counter() - t
    want = {frozenset((int(s), n - planted + i)) for i, s in enumerate(src)}
    found = {frozenset(int(Path(m.path).stem) for m in g.members) for g in dup.groups if g.kind == "near"}
    return {"vectors": n, "dim": d, "planted_pairs": planted, "groups_found": len(found),
            "planted_found": len(want & found), "other_groups": len(found - want), "seconds": round(seconds, 1),
            "device": dup.device, "verification": _counts(dup),
            "load_avg_before": before, "load_avg_after": load_avg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc50", default=None)
    ap.add_argument("--originals", type=int, default=140)
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--same-source", type=int, default=40, help="other takes of originals' source recordings")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.85, 0.9, 0.95, 0.98])
    ap.add_argument("--no-verify-too", action="store_true", help="also run vector-only dedup (verify=False)")
    ap.add_argument("--vector-thresholds", type=float, nargs="+", default=[0.85, 0.9, 0.95, 0.98])
    ap.add_argument("--distribution", action="store_true",
                    help="also: the audio scores of all vector-graph pairs at cosine >= 0.5, by kind of pair")
    ap.add_argument("--scale", type=int, default=0, help="instead: dedup N random vectors (timing)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="audiosim-bench-dedup-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = {"scale": scale_case(args, work)} if args.scale else {"copies": copies_case(args, work)}
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

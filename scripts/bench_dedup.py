"""Near-duplicate detection on real clips: pair precision and recall against the threshold, and dedup at scale.

**Copies** (default): ``--originals`` ESC-50 clips each get one copy made the way sound libraries
hold one recording several times -- a lossy re-encode (``ogg`` Vorbis, ``mp3``), a lossless one
(``flac``), resampling (``resample`` to 44.1/22.05/8 kHz), a trim of up to 0.5 s at either end
(``trim``), a gain of ±6 dB (``gain``), light noise at -50 dBFS (``noise``) -- chosen in turn; the
copies, their originals and ``--others`` further ESC-50 clips (different source recordings) go
into one folder, indexed with ``audiosim.index_folder`` (default settings: YAMNet, mu, silence
left out), and ``Collection.duplicates`` runs at every ``--thresholds``. A predicted pair is two
files of one group; it is true when it is an (original, copy) pair. Pairs of two ESC-50 clips cut
from one source recording (same freesound id) are real near-duplicates that the copies do not
label: they are counted apart (``same_source_pairs``) and in neither precision nor recall.

**Scale** (``--scale N``): N random ``--dim``-d vectors (plus N/100 planted near copies) stored in
a collection through the store's writer, then ``Collection.duplicates()`` timed.

Prints JSON. Needs ESC-50 (``$ESC50_ROOT``) and YAMNet weights (``$AUDIOSIM_MODELS``)::

    python scripts/bench_dedup.py --originals 150 --others 300
    python scripts/bench_dedup.py --scale 100000 --dim 1024
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
TRANSFORMS = ("ogg", "mp3", "flac", "resample", "trim", "gain", "noise")


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


def copies_case(args, work: Path) -> dict:
    import soundfile as sf

    import audiosim
    from audiosim.eval.esc50 import load_esc50

    esc = load_esc50(args.esc50)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(esc.clips))
    folder = work / "clips"
    folder.mkdir()
    truth, kinds, sources = set(), {}, {}
    used_sources = set()
    chosen = []
    for i in order:  # originals and others from distinct source recordings
        c = esc.clips[int(i)]
        if source_id(c.path) in used_sources:
            continue
        used_sources.add(source_id(c.path))
        chosen.append(c)
        if len(chosen) == args.originals + args.others:
            break
    for n, c in enumerate(chosen):
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
            truth.add(frozenset((name, cname)))
            kinds[cname] = kind
            sources[cname] = source_id(c.path)
    t0 = time.perf_counter()
    report = audiosim.index_folder(folder, work / "coll", label_from="none")
    index_s = time.perf_counter() - t0
    coll = audiosim.open_collection(work / "coll")
    rows = []
    for th in args.thresholds:
        t = time.perf_counter()
        dup = coll.duplicates(threshold=th)
        seconds = time.perf_counter() - t
        predicted = set()
        for g in dup.groups:
            names = [Path(m.path).name for m in g.members]
            predicted |= {frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1:]}
        same_source = {p for p in predicted if p not in truth and len({sources[n] for n in p}) == 1}
        scored = predicted - same_source
        tp = len(scored & truth)
        found_by_kind = {k: sum(1 for p in truth & scored if any(kinds.get(n) == k for n in p)) /
                         max(1, sum(1 for p in truth if any(kinds.get(n) == k for n in p))) for k in TRANSFORMS}
        rows.append({"threshold": th, "precision": round(tp / len(scored), 4) if scored else 1.0,
                     "recall": round(tp / len(truth), 4), "false_pairs": len(scored - truth),
                     "same_source_pairs": len(same_source), "recall_by_copy": {k: round(v, 3) for k, v in found_by_kind.items()},
                     "seconds": round(seconds, 3)})
    return {"files": report.vectors, "failed": len(report.failures), "originals": args.originals, "others": args.others,
            "true_pairs": len(truth), "index_seconds": round(index_s, 1), "by_threshold": rows}


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
    cls = getattr(store, "CollectionStore", None) or getattr(store, "Collection")
    c = cls.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), metric="cosine")
    with c.writer(purpose="bench") as w:
        for a in range(0, n, 50_000):
            b = min(a + 50_000, n)
            w.append(store.Rows(path=[f"/synthetic/{i}.wav" for i in range(a, b)],
                                content_sha256=[f"{i:064x}" for i in range(a, b)], offset_s=np.zeros(b - a),
                                duration_s=np.ones(b - a), label=[None] * (b - a), embedding=X[a:b]))
    coll = audiosim.open_collection(root)
    t = time.perf_counter()
    dup = coll.duplicates(threshold=0.95)
    seconds = time.perf_counter() - t
    found = sum(1 for g in dup.groups if g.kind == "near")
    return {"vectors": n, "dim": d, "planted_pairs": planted, "groups_found": found, "seconds": round(seconds, 1),
            "device": dup.device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc50", default=None)
    ap.add_argument("--originals", type=int, default=140)
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.98])
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

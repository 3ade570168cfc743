"""Search inside long recordings: region hits and excerpt location on recordings built from ESC-50 clips.

Two cases, both built from real ESC-50 clips placed at known offsets (16 kHz mono WAV):

* ``--short`` (default 200 s): clips (5 s each) back to back (40 clips: the 200 s case), and a
  second recording where each clip is followed by a random silence (up to ``--max-gap`` s) or,
  with probability ``--overlap``, the next one starts up to 1 s before it ends (mixed); each built
  ``--repeats`` times from different clips (seeds), the rates averaged. The recording is indexed
  with ``--segment`` / ``--segment-hop`` (and ``--skip-silence``); each placed clip's own file is
  then a query, grouped into regions: a **region hit** is a top-1 region that overlaps the span
  where the clip was placed (also reported at top 3).
* ``--long`` (default 3600 s): ``--recordings`` recordings (default 2) built the same way from
  disjoint clips, indexed into one collection; ``--excerpts`` excerpts per recording of random
  length (``--excerpt-min``..``--excerpt-max`` s, default 5-30) are cut at random offsets (off the
  hop grid), degraded the way users' excerpts are (``--conditions``: ``clean``; additive white
  noise ``noise-60`` .. ``noise-30`` (dBFS RMS); ``gain+6`` / ``gain-6`` (dB); a lossy re-encode
  ``ogg`` (Vorbis) / ``mp3`` through soundfile; ``resample44k`` / ``resample22k`` (to that rate and
  handed over at it)), and located with ``Searcher.locate``: **found** when the best location is
  in the right recording and its offset within ``--tolerance`` s (default 0.5) of the true one.
  Every condition uses the same excerpts and is reported separately: found rate, median and p90
  offset error, median confidence and print correlation (``verified``), how many best locations
  came from the fallback scan of the recordings (``scanned``), locate time, and each miss (where
  it landed).

Prints JSON (figures, settings, timings, load average). Needs ESC-50 (``--esc50`` or
``$ESC50_ROOT``) and, for YAMNet, its weights (``$AUDIOSIM_MODELS``). With ``--workdir`` the
long case's recordings and collection are kept and reused by the next run with the same settings
(``collection_reused``: the runs measure the same audio, and skip indexing it again)::

    flock /tmp/bench.lock python scripts/bench_long.py --short 0 --long 3600 --recordings 2 --excerpts 30 \
        --workdir /tmp/bench-long
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def build_recording(clips, *, seconds: float, max_gap: float, overlap: float, rng, waves: dict) -> tuple[np.ndarray, list]:
    """(samples, placements) where placements are (clip path, start_s, end_s) in order."""
    from audiosim.engine.audio.decode import load_audio

    out = np.zeros(int(seconds * SR) + 20 * SR, dtype=np.float32)
    placements, t = [], 0.0
    for clip in clips:
        if clip.path not in waves:
            waves[clip.path] = load_audio(clip.path, sample_rate=SR)
        w = waves[clip.path]
        if t >= seconds - 1.0:  # clips start within the recording's length (the last may run over by < 1 clip)
            break
        start = int(round(t * SR))
        out[start:start + w.size] += w
        placements.append((clip.path, t, t + w.size / SR))
        end = t + w.size / SR
        if rng.random() < overlap:  # the next clip starts before this one ends (the two are mixed)
            t = end - float(rng.uniform(0.2, 1.0))
        else:
            t = end + float(rng.uniform(0.0, max_gap))
    total = max(end for _, _, end in placements)
    return np.clip(out[: int(np.ceil(total * SR))], -1.0, 1.0), placements


def _index(folder: Path, coll: Path, args) -> float:
    import audiosim

    t0 = time.perf_counter()
    audiosim.index_folder(folder, coll, embedder=args.embedder, weights=args.weights, pooling=args.pooling,
                          skip_silence=not args.keep_silence,
                          segment_s=args.segment, segment_hop_s=args.segment_hop, label_from="none")
    return time.perf_counter() - t0


def short_case(esc, args, rng, work: Path, waves: dict, *, max_gap: float, overlap: float, name: str) -> dict:
    import soundfile as sf

    import audiosim

    order = rng.permutation(len(esc.clips))
    rec, placed = build_recording([esc.clips[i] for i in order], seconds=args.short, max_gap=max_gap,
                                  overlap=overlap, rng=rng, waves=waves)
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work / f"{name}_coll", ignore_errors=True)
    folder.mkdir()
    sf.write(folder / "recording.wav", rec, SR, subtype="FLOAT")
    index_s = _index(folder, work / f"{name}_coll", args)
    searcher = audiosim.open_collection(work / f"{name}_coll").searcher()
    hits1 = hits3 = 0
    times = []
    for path, start, end in placed:
        t = time.perf_counter()
        regions = searcher.search(clip=path, k=3, group="region")
        times.append((time.perf_counter() - t) * 1e3)
        overlaps = [r.start_s < end and r.end_s > start for r in regions]
        hits1 += bool(overlaps[:1] and overlaps[0])
        hits3 += any(overlaps)
    return {"recording_s": round(rec.size / SR, 1), "clips": len(placed), "max_gap_s": max_gap,
            "overlap_probability": overlap, "region_hit_rate_top1": hits1 / len(placed),
            "region_hit_rate_top3": hits3 / len(placed), "index_seconds": round(index_s, 2),
            "query_ms_median": round(float(np.median(times)), 2)}


def long_recordings(esc, args, rng, work: Path, waves: dict) -> tuple[list, float, bool]:
    """The long case's recordings, indexed: ([(path, samples, placements)], index seconds, reused).

    ``--recordings`` recordings of ``--long`` s each, from disjoint clips (no clip sits in two of
    them), in one folder and one collection. With ``--workdir`` a previous run's recordings and
    collection are reused when they were built with the same settings (``long/settings.json``):
    every run then measures the same audio without indexing it again.
    """
    import soundfile as sf

    folder, coll = work / "long", work / "long_coll"
    settings = {"seed": args.seed, "long": args.long, "recordings": args.recordings, "max_gap": args.max_gap,
                "overlap": args.overlap, "embedder": args.embedder, "weights": str(args.weights),
                "pooling": args.pooling, "keep_silence": args.keep_silence, "segment": args.segment,
                "segment_hop": args.segment_hop}
    manifest = folder / "settings.json"
    order = rng.permutation(len(esc.clips))
    if manifest.exists() and coll.exists() and json.loads(manifest.read_text()) == settings:
        recs = []
        for r in range(args.recordings):
            x, _ = sf.read(folder / f"recording_{r}.wav", dtype="float32")
            placed = [tuple(p) for p in json.loads((folder / f"recording_{r}.json").read_text())]
            recs.append((str((folder / f"recording_{r}.wav").resolve()), x, placed))
        return recs, float(json.loads((folder / "index_seconds.json").read_text())), True
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(coll, ignore_errors=True)
    folder.mkdir(parents=True)
    share = len(order) // args.recordings
    recs = []
    for r in range(args.recordings):
        mine = order[r * share:(r + 1) * share]
        x, placed = build_recording([esc.clips[i] for i in mine], seconds=args.long, max_gap=args.max_gap,
                                    overlap=args.overlap, rng=rng, waves=waves)
        path = folder / f"recording_{r}.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        (folder / f"recording_{r}.json").write_text(json.dumps(placed))
        recs.append((str(path.resolve()), x, placed))
    index_s = _index(folder, coll, args)
    (folder / "index_seconds.json").write_text(json.dumps(index_s))
    manifest.write_text(json.dumps(settings))
    return recs, index_s, False


def draw_excerpts(recs: list, args, rng) -> list[tuple[int, float, float, int]]:
    """(recording, start_s, length_s, seed) of ``--excerpts`` excerpts per recording, at random offsets."""
    drawn = []
    for r, (_, x, _) in enumerate(recs):
        duration = x.size / SR
        for _ in range(args.excerpts):
            length = float(rng.uniform(args.excerpt_min, args.excerpt_max))
            start = float(rng.uniform(0, duration - length))
            drawn.append((r, start, length, int(rng.integers(2**31))))
    return drawn


def long_case(esc, args, work: Path, waves: dict) -> dict:
    import audiosim

    recs, index_s, reused = long_recordings(esc, args, np.random.default_rng(args.seed), work, waves)
    searcher = audiosim.open_collection(work / "long_coll").searcher()
    tol = args.tolerance
    drawn = draw_excerpts(recs, args, np.random.default_rng(args.seed + 1))
    conditions = {}
    for cond in [c.strip() for c in args.conditions.split(",") if c.strip()]:
        errors, found, confidences, times, misses, scanned, verified = [], 0, [], [], [], 0, []
        for n, (r, start, length, seed) in enumerate(drawn):
            path, rec, _ = recs[r]
            excerpt = rec[int(round(start * SR)):int(round((start + length) * SR))]
            wave, sr = degrade(excerpt, cond, np.random.default_rng(seed))
            t = time.perf_counter()
            locations = searcher.locate(waveform=wave, sample_rate=sr, max_files=3)
            times.append((time.perf_counter() - t) * 1e3)
            best = locations[0] if locations else None
            right_file = best is not None and Path(best.path).resolve() == Path(path)
            err = abs(best.offset_s - start) if right_file else float("inf")
            errors.append(err)
            found += err <= tol
            confidences.append(best.confidence if best else 0.0)
            scanned += bool(best is not None and best.scanned)
            if best is not None and best.verified is not None:
                verified.append(best.verified)
            if err > tol:
                misses.append({"excerpt": n, "recording": r, "start_s": round(start, 2), "length_s": round(length, 2),
                               "found_s": round(best.offset_s, 2) if best else None,
                               "same_file": right_file, "confidence": round(best.confidence, 3) if best else None,
                               "verified": None if best is None or best.verified is None else round(best.verified, 3),
                               "scanned": bool(best is not None and best.scanned)})
        conditions[cond] = {"found_rate": round(found / len(drawn), 4), "found": found, "excerpts": len(drawn),
                            "median_offset_error_s": round(float(np.median(errors)), 3),
                            "p90_offset_error_s": round(float(np.percentile(errors, 90)), 3),
                            "median_confidence": round(float(np.median(confidences)), 3),
                            "verified": len(verified), "median_verified": round(float(np.median(verified)), 3) if verified else None,
                            "scanned": scanned, "locate_ms_median": round(float(np.median(times)), 1),
                            "locate_ms_p90": round(float(np.percentile(times, 90)), 1), "misses": misses}
    return {"recordings": len(recs), "recording_s": [round(x.size / SR, 1) for _, x, _ in recs],
            "max_gap_s": args.max_gap, "overlap_probability": args.overlap,
            "excerpts": len(drawn), "excerpt_s": [args.excerpt_min, args.excerpt_max], "tolerance_s": tol,
            "index_seconds": round(index_s, 2), "collection_reused": reused, "conditions": conditions}


def degrade(x: np.ndarray, condition: str, rng) -> tuple[np.ndarray, int]:
    """(samples, sample rate) of an excerpt after ``condition`` (see the module docstring)."""
    import io

    import soundfile as sf

    from audiosim.engine.audio.decode import resample

    if condition == "clean":
        return x, SR
    if condition.startswith("noise"):
        db = float(condition[len("noise"):])
        return (x + 10 ** (db / 20) * rng.standard_normal(x.size)).astype(np.float32), SR
    if condition.startswith("gain"):
        return np.clip(x * 10 ** (float(condition[len("gain"):]) / 20), -1, 1).astype(np.float32), SR
    if condition in ("ogg", "mp3"):
        buf = io.BytesIO()
        fmt, sub = ("OGG", "VORBIS") if condition == "ogg" else ("MP3", "MPEG_LAYER_III")
        sf.write(buf, np.clip(x, -1, 1), SR, format=fmt, subtype=sub)
        buf.seek(0)
        y, _ = sf.read(buf, dtype="float32")
        return y, SR
    if condition.startswith("resample"):
        target = {"resample44k": 44100, "resample22k": 22050}[condition]
        return resample(x, orig_sr=SR, target_sr=target), target
    raise SystemExit(f"unknown condition {condition!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc50", default=None, help="ESC-50 root (default: $ESC50_ROOT)")
    ap.add_argument("--embedder", default="yamnet")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--pooling", default="mu")
    ap.add_argument("--keep-silence", action="store_true", help="pool digital silence too (the old default)")
    ap.add_argument("--conditions", default="clean,noise-60,noise-50,noise-45,noise-40,noise-30,gain+6,gain-6,ogg,mp3,"
                    "resample44k,resample22k", help="comma-separated degradations of the excerpts (see above)")
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--segment-hop", type=float, default=1.0)
    ap.add_argument("--short", type=float, default=200.0, help="length of the region-hit recording (s); 0 skips it")
    ap.add_argument("--long", type=float, default=3600.0, help="length of the excerpt-location recording (s); 0 skips it")
    ap.add_argument("--recordings", type=int, default=2, help="long recordings (disjoint clips) in the located collection")
    ap.add_argument("--excerpts", type=int, default=20, help="excerpts per long recording (all conditions use the same)")
    ap.add_argument("--excerpt-min", type=float, default=5.0)
    ap.add_argument("--excerpt-max", type=float, default=30.0)
    ap.add_argument("--max-gap", type=float, default=1.0, help="largest silence between clips (s)")
    ap.add_argument("--overlap", type=float, default=0.15, help="probability that a clip starts before the previous ends")
    ap.add_argument("--tolerance", type=float, default=0.5, help="offset error that counts as found (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="recordings (seeds) of the short case, averaged")
    ap.add_argument("--workdir", default=None, help="keep the recordings and collections here (default: a temp dir)")
    args = ap.parse_args()

    from audiosim.eval.esc50 import load_esc50

    esc = load_esc50(args.esc50)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="audiosim-bench-long-"))
    work.mkdir(parents=True, exist_ok=True)
    out = {"embedder": args.embedder, "pooling": args.pooling, "skip_silence": not args.keep_silence,
           "segment_s": args.segment, "segment_hop_s": args.segment_hop,
           "seed": args.seed}
    waves: dict = {}
    try:
        if args.short:  # the clips back to back (the 200 s case), then with silences and overlaps
            for key, gap, overlap in (("regions", 0.0, 0.0), ("regions_gaps_overlaps", args.max_gap, args.overlap)):
                runs = [short_case(esc, args, np.random.default_rng(args.seed + r), work, waves, max_gap=gap,
                                   overlap=overlap, name=f"{key}_{r}") for r in range(args.repeats)]
                out[key] = {**runs[0], "recordings": args.repeats,
                            "region_hit_rate_top1": float(np.mean([r["region_hit_rate_top1"] for r in runs])),
                            "region_hit_rate_top3": float(np.mean([r["region_hit_rate_top3"] for r in runs])),
                            "per_recording_top1": [round(r["region_hit_rate_top1"], 4) for r in runs]}
        if args.long:
            out["locate"] = long_case(esc, args, work, waves)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    out["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

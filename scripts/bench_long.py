"""Search inside long recordings: region hits and excerpt location on recordings built from ESC-50 clips.

Two cases, both built from real ESC-50 clips placed at known offsets (16 kHz mono WAV):

* ``--short`` (default 200 s): clips (5 s each) back to back (40 clips: the 200 s case), and a
  second recording where each clip is followed by a random silence (up to ``--max-gap`` s) or,
  with probability ``--overlap``, the next one starts up to 1 s before it ends (mixed); each built
  ``--repeats`` times from different clips (seeds), the rates averaged. The recording is indexed
  with ``--segment`` / ``--segment-hop`` (and ``--skip-silence``); each placed clip's own file is
  then a query, grouped into regions: a **region hit** is a top-1 region that overlaps the span
  where the clip was placed (also reported at top 3).
* ``--long`` (default 3600 s): a recording built the same way; ``--excerpts`` excerpts of random
  length (``--excerpt-min``..``--excerpt-max`` s) are cut at random offsets (off the hop grid),
  degraded the way users' excerpts are (``--conditions``: ``clean``; additive white noise
  ``noise-60`` .. ``noise-30`` (dBFS RMS); ``gain+6`` / ``gain-6`` (dB); a lossy re-encode
  ``ogg`` (Vorbis) / ``mp3`` through soundfile; ``resample44k`` / ``resample22k`` (to that rate and
  handed over at it)), and located with ``Searcher.locate``: **found** when the best location's
  offset is within ``--tolerance`` s (default 0.5) of the true offset. Every condition uses the same
  excerpts and is reported separately (found rate, median and p90 offset error, median confidence).

Prints JSON (figures, settings, timings). Needs ESC-50 (``--esc50`` or ``$ESC50_ROOT``) and, for
YAMNet, its weights (``$AUDIOSIM_MODELS``)::

    python scripts/bench_long.py --embedder yamnet --segment 2 --segment-hop 1 [--keep-silence] \
        --short 0 --long 1200 --excerpts 50 --conditions clean,noise-60,noise-45,noise-30,gain+6,ogg,resample44k
"""

from __future__ import annotations

import argparse
import json
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


def long_case(esc, args, rng, work: Path, waves: dict) -> dict:
    import soundfile as sf

    import audiosim

    order = rng.permutation(len(esc.clips))
    rec, placed = build_recording([esc.clips[i] for i in order], seconds=args.long, max_gap=args.max_gap,
                                  overlap=args.overlap, rng=rng, waves=waves)
    folder = work / "long"
    folder.mkdir()
    sf.write(folder / "recording.wav", rec, SR, subtype="FLOAT")
    index_s = _index(folder, work / "long_coll", args)
    searcher = audiosim.open_collection(work / "long_coll").searcher()
    tol = args.tolerance
    duration = rec.size / SR
    drawn = []
    for _ in range(args.excerpts):
        length = float(rng.uniform(args.excerpt_min, args.excerpt_max))
        start = float(rng.uniform(0, duration - length))
        drawn.append((start, length, int(rng.integers(2**31))))
    conditions = {}
    for cond in [c.strip() for c in args.conditions.split(",") if c.strip()]:
        errors, found, confidences, times = [], 0, [], []
        for start, length, seed in drawn:
            excerpt = rec[int(round(start * SR)):int(round((start + length) * SR))]
            wave, sr = degrade(excerpt, cond, np.random.default_rng(seed))
            t = time.perf_counter()
            locations = searcher.locate(waveform=wave, sample_rate=sr, max_files=3)
            times.append((time.perf_counter() - t) * 1e3)
            err = abs(locations[0].offset_s - start) if locations else float("inf")
            errors.append(err)
            found += err <= tol
            confidences.append(locations[0].confidence if locations else 0.0)
        conditions[cond] = {"found_rate": found / len(drawn), "median_offset_error_s": round(float(np.median(errors)), 3),
                            "p90_offset_error_s": round(float(np.percentile(errors, 90)), 3),
                            "median_confidence": round(float(np.median(confidences)), 3),
                            "locate_ms_median": round(float(np.median(times)), 1)}
    return {"recording_s": round(duration, 1), "max_gap_s": args.max_gap, "overlap_probability": args.overlap,
            "excerpts": args.excerpts, "excerpt_s": [args.excerpt_min, args.excerpt_max], "tolerance_s": tol,
            "index_seconds": round(index_s, 2), "conditions": conditions}


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
    ap.add_argument("--excerpts", type=int, default=40)
    ap.add_argument("--excerpt-min", type=float, default=10.0)
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
    rng = np.random.default_rng(args.seed)
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
            out["locate"] = long_case(esc, args, rng, work, waves)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

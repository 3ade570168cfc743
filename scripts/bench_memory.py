"""Peak memory of decoding and embedding one long recording; prints JSON.

Writes a synthetic WAV (default: 1 hour, 44.1 kHz, mono, 16-bit; about 318 MB) into a
temporary folder, then for each embedder runs a fresh Python subprocess that decodes and
embeds it and reports its own peak resident set size (``VmHWM`` from ``/proc/self/status``,
falling back to ``getrusage``). Each child uses the public ingest API
``audiosim.index_folder`` when the package has it (``"api": "index_folder"``), otherwise the
streaming functions directly (``"api": "embed_file"``: :func:`audiosim.engine.audio.streaming.embed_file`).
``--api embed_file`` forces the latter. ``--mode whole`` measures the old whole-file path instead (``load_audio`` + ``embed_frames``) for
comparison. Target: under 1 GB with yamnet on the 1-hour file (the whole-file path took 9.9 GB).

    python scripts/bench_memory.py                                  # 60 min, yamnet and logmel
    python scripts/bench_memory.py --minutes 10 --embedders logmel  # quicker
    python scripts/bench_memory.py --api embed_file                 # the streaming functions directly
    python scripts/bench_memory.py --mode whole --minutes 10        # the old path, for comparison

yamnet needs its weights ($AUDIOSIM_MODELS/yamnet/yamnet.tflite or the user cache); an embedder
that cannot be built is reported with its error instead of figures.
"""

from __future__ import annotations

import argparse
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

BLOCK_S = 30


def write_long_wav(path: Path, *, minutes: float, sample_rate: int, channels: int, seed: int = 0) -> Path:
    """A deterministic mix of tones, sweeps and noise, written block by block (bounded memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = round(minutes * 60 * sample_rate)
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(BLOCK_S * sample_rate, total - done)
            t = (done + np.arange(n)) / sample_rate
            freq = 220.0 * 2 ** ((done // (BLOCK_S * sample_rate)) % 24 / 12)
            x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
            x *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.1 * t) ** 2
            f.write(np.repeat(x.astype(np.float32)[:, None], channels, axis=1))
            done += n
    return path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args) -> dict:
    """Decode + embed ``args.file`` once in this process; report figures."""
    import audiosim

    out = {"embedder": args.embedder, "mode": args.mode, "file": args.file}
    t0 = time.perf_counter()
    if args.mode == "whole":
        from audiosim.engine.audio.decode import load_audio
        from audiosim.engine.models.embedders import make_embedder

        emb = make_embedder(args.embedder)
        wave = load_audio(args.file, sample_rate=emb.info.sample_rate)
        frames, _ = emb.embed_frames(wave)
        out.update(api="load_audio+embed_frames", frames=int(frames.shape[0]), dim=int(frames.shape[1]))
    elif args.api == "index_folder" or (args.api == "auto" and hasattr(audiosim, "index_folder")):
        report = audiosim.index_folder(str(Path(args.file).parent), str(Path(args.work) / f"coll-{args.embedder}"),
                                       embedder=args.embedder)
        out.update(api="index_folder", report=report.to_dict() if hasattr(report, "to_dict") else str(report))
    else:
        from audiosim.engine.models.embedders import make_embedder
        from audiosim.engine.audio.streaming import embed_file

        emb = make_embedder(args.embedder)
        res = embed_file(emb, args.file, chunk_s=args.chunk_s)
        out.update(api="embed_file", frames=int(res.frames.shape[0]), dim=int(res.frames.shape[1]),
                   duration_s=round(res.duration_s, 3), sha256=res.sha256)
    out.update(seconds=round(time.perf_counter() - t0, 2), peak_rss_mb=round(peak_rss_mb(), 1))
    return out


def run_child(file: Path, embedder: str, *, mode: str, api: str, chunk_s: float, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--file", str(file), "--embedders", embedder, "--mode", mode,
           "--api", api, "--chunk-s", str(chunk_s), "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"embedder": embedder, "mode": mode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--embedders", default="yamnet,logmel", help="comma-separated")
    ap.add_argument("--mode", choices=["stream", "whole"], default="stream")
    ap.add_argument("--api", choices=["auto", "index_folder", "embed_file"], default="auto",
                    help="stream mode: the public ingest API (auto: when audiosim has index_folder) or embed_file")
    ap.add_argument("--chunk-s", type=float, default=60.0, help="seconds of audio per embedding piece (stream mode)")
    ap.add_argument("--dir", default=None, help="where to write the WAV (default: a temporary folder, removed)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.embedder = args.embedders
        print(json.dumps(child(args)))
        return

    with tempfile.TemporaryDirectory(prefix="audiosim-bench-memory-", dir=args.dir) as tmp:
        audio_dir = Path(tmp) / "audio"
        audio_dir.mkdir()
        t0 = time.perf_counter()
        wav = write_long_wav(audio_dir / "long.wav", minutes=args.minutes, sample_rate=args.sample_rate,
                             channels=args.channels)
        write_s = time.perf_counter() - t0
        results = [run_child(wav, name.strip(), mode=args.mode, api=args.api, chunk_s=args.chunk_s, work=Path(tmp))
                   for name in args.embedders.split(",") if name.strip()]
        summary = {
            "file": {"minutes": args.minutes, "sample_rate": args.sample_rate, "channels": args.channels,
                     "bytes": wav.stat().st_size, "write_seconds": round(write_s, 1)},
            "mode": args.mode,
            "chunk_s": args.chunk_s,
            "results": results,
            "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

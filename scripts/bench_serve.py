"""Load-test a running `audiosim serve`: N concurrent clients for T seconds, latency percentiles as JSON.

    audiosim serve --collection /tmp/esc_yamnet &
    python scripts/bench_serve.py --clients 1 --duration 20 --mode upload --clips-dir ESC-50/audio
    python scripts/bench_serve.py --clients 1 --duration 20 --mode id
    python scripts/bench_serve.py --clients 8 --duration 60 --mode mix --clips-dir ESC-50/audio

Each client is a thread with its own HTTP connection (httpx) that sends one request after the
other until the time is up: ``upload`` searches post a 5 s clip (ESC-50 files from
``--clips-dir``, else synthetic clips written once, 44.1 kHz 16-bit WAV), ``id`` searches ask
"more like this" for ids taken from warm-up results, ``mix`` alternates the two at random (seeded
per client). Only loopback targets are accepted, and clients (<= 64) and duration (<= 600 s) are
bounded. Prints one JSON object: per kind and overall the request count, status counts, 5xx
other than 503, deliberate 503s, transport errors, p50/p95/p99/max latency (ms, client-side,
whole HTTP round trip), throughput, the median of the server's own timing breakdown, the number
of requests slower than ``--bound-s`` (the server's ``--queue-wait`` plus headroom), and the
machine's load average before and after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_CLIENTS = 64
MAX_DURATION_S = 600.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only)")
    p.add_argument("--collection", default=None, help="collection name (default: the server's first)")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (after warm-up)")
    p.add_argument("--mode", choices=["upload", "id", "mix"], default="mix")
    p.add_argument("--clips-dir", type=Path, default=None, help="folder of query clips (e.g. ESC-50 audio/, 5 s each)")
    p.add_argument("--clip-seconds", type=float, default=5.0, help="length of synthetic clips")
    p.add_argument("--n-clips", type=int, default=16, help="distinct clips to cycle through")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="untimed upload searches first (also collect ids)")
    p.add_argument("--bound-s", type=float, default=10.0, help="report requests slower than this (the queue bound)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request HTTP timeout (s)")
    p.add_argument("--token", default=os.environ.get("AUDIOSIM_TOKEN"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    host = urlparse(a.url).hostname
    if host not in LOOPBACK:
        p.error(f"--url must point at this machine ({', '.join(sorted(LOOPBACK))}), not {host!r}")
    if not 1 <= a.clients <= MAX_CLIENTS:
        p.error(f"--clients must be 1..{MAX_CLIENTS}")
    if not 0 < a.duration <= MAX_DURATION_S:
        p.error(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds")
    return a


def synthetic_clips(n: int, seconds: float, seed: int) -> list[tuple[str, bytes]]:
    import soundfile as sf

    from audiosim.engine.audio.synth import KINDS

    rng = np.random.default_rng(seed)
    out = []
    kinds = list(KINDS.items())
    for i in range(n):
        kind, make = kinds[i % len(kinds)]
        x = make(rng, 44100, seconds)
        buf = io.BytesIO()
        sf.write(buf, x, 44100, format="WAV", subtype="PCM_16")
        out.append((f"{kind}_{i:02d}.wav", buf.getvalue()))
    return out


def folder_clips(folder: Path, n: int, seed: int) -> list[tuple[str, bytes]]:
    from audiosim.engine.audio.decode import is_audio_path

    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_audio_path(p))
    if not files:
        raise SystemExit(f"no audio files under {folder}")
    random.Random(seed).shuffle(files)
    return [(p.name, p.read_bytes()) for p in files[:n]]


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2),
            "mean_ms": round(float(a.mean()), 2)}


def summarize(records: list[dict], duration_s: float, bound_s: float) -> dict:
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    ok = [r for r in records if r["status"] == 200]
    server = {}
    for key in ("queue_ms", "decode_ms", "embed_ms", "search_ms", "server_ms"):
        vals = [r["timing"][key] for r in ok if r.get("timing") and r["timing"].get(key) is not None]
        if vals:
            server[f"median_{key}"] = round(float(np.median(vals)), 2)
    return {
        "requests": len(records),
        "ok": len(ok),
        "statuses": dict(sorted(statuses.items())),
        "http_5xx_not_503": sum(1 for r in records if isinstance(r["status"], int) and r["status"] >= 500
                                and r["status"] != 503),
        "busy_503": sum(1 for r in records if r["status"] == 503),
        "transport_errors": sum(1 for r in records if r["status"] == "transport"),
        "throughput_rps": round(len(ok) / duration_s, 2),
        "latency_ok": percentiles([r["ms"] for r in ok]),
        "latency_all": percentiles([r["ms"] for r in records]),
        "slower_than_bound": sum(1 for r in records if r["ms"] > bound_s * 1000),
        "server_timing": server,
    }


def main(argv=None) -> int:
    import httpx

    a = parse_args(argv)
    headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
    base = a.url.rstrip("/")
    with httpx.Client(base_url=base, headers=headers, timeout=a.timeout) as c:
        listing = c.get("/api/collections")
        listing.raise_for_status()
        names = [x["name"] for x in listing.json()["collections"]]
        name = a.collection or names[0]
        if name not in names:
            raise SystemExit(f"the server has no collection {name!r}; it has {names}")
        info = c.get(f"/api/collections/{name}").json()
        clips = folder_clips(a.clips_dir, a.n_clips, a.seed) if a.clips_dir else \
            synthetic_clips(a.n_clips, a.clip_seconds, a.seed)
        ids: set[int] = set()
        for i in range(max(1, a.warmup)):
            fname, data = clips[i % len(clips)]
            r = c.post(f"/api/collections/{name}/search", files={"file": (fname, data, "audio/wav")},
                       data={"k": "50"})
            r.raise_for_status()
            ids.update(h["id"] for h in r.json()["hits"])
    ids_list = sorted(ids)
    search_url = f"/api/collections/{name}/search"
    records: list[dict] = []
    lock = threading.Lock()
    start_barrier = threading.Barrier(a.clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        rng = random.Random(a.seed * 1000 + n)
        mine = []
        with httpx.Client(base_url=base, headers=headers, timeout=a.timeout) as c:
            start_barrier.wait()
            i = n
            while time.perf_counter() < deadline[0]:
                kind = a.mode if a.mode != "mix" else ("upload" if rng.random() < 0.5 else "id")
                t0 = time.perf_counter()
                try:
                    if kind == "upload":
                        fname, data = clips[i % len(clips)]
                        r = c.post(search_url, files={"file": (fname, data, "audio/wav")}, data={"k": str(a.k)})
                    else:
                        r = c.post(search_url, json={"id": ids_list[i % len(ids_list)], "k": a.k})
                    ms = (time.perf_counter() - t0) * 1000
                    timing = r.json().get("timing") if r.status_code == 200 else None
                    mine.append({"kind": kind, "status": r.status_code, "ms": ms, "timing": timing})
                except httpx.HTTPError as e:
                    mine.append({"kind": kind, "status": "transport", "ms": (time.perf_counter() - t0) * 1000,
                                 "error": type(e).__name__})
                i += a.clients
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(a.clients)]
    for t in threads:
        t.start()
    load_before = os.getloadavg()
    deadline[0] = time.perf_counter() + a.duration
    t_start = time.perf_counter()
    start_barrier.wait()
    for t in threads:
        t.join(timeout=a.duration + a.timeout + 30)
    elapsed = time.perf_counter() - t_start
    load_after = os.getloadavg()

    kinds = sorted({r["kind"] for r in records})
    result = {
        "url": base,
        "collection": name,
        "collection_size": info["size"],
        "embedder": info["embedder"]["name"],
        "mode": a.mode,
        "clients": a.clients,
        "duration_s": round(elapsed, 2),
        "clips": {"source": str(a.clips_dir) if a.clips_dir else f"synthetic {a.clip_seconds:g} s 44.1 kHz wav",
                  "count": len(clips), "mean_bytes": int(np.mean([len(d) for _, d in clips]))},
        "k": a.k,
        "bound_s": a.bound_s,
        "overall": summarize(records, elapsed, a.bound_s),
        "by_kind": {k: summarize([r for r in records if r["kind"] == k], elapsed, a.bound_s) for k in kinds},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speaker retrieval P@1 of an embedder on a folder whose file names carry speaker ids; prints JSON.

File names follow ``<digit>_<speaker>_<n>.<ext>`` (as in the free spoken digit data set): the
second field is the speaker. Through the public API: the folder is indexed into a collection
with the embedder, then every stored clip searches by id ("more like this", its own file left
out) and scores 1 when the best hit has the same speaker. Chance is the expected P@1 of a random
other clip.

Folders to measure when none is at hand (both named synthetic in the output):

* ``--make-espeak DIR`` writes espeak-ng's English voices (one per speaker variant) saying
  three-digit strings: ``apt-get install espeak-ng``;
* ``--make-synthetic DIR`` writes :mod:`audiosim.engine.audio.voices` source-filter voices.

    python scripts/bench_speaker.py --make-espeak /tmp/spk && python scripts/bench_speaker.py --folder /tmp/spk
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import audiosim
from audiosim.engine.search.library import open_collection

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_SPEAKERS = ("en+m1", "en+m3", "en+m7", "en+f2", "en+f4", "en-us+Andy", "en+Annie", "en-gb-scotland+Michael")


def speaker_of(path: str) -> str:
    parts = Path(path).stem.split("_")
    if len(parts) < 3:
        raise SystemExit(f"{path}: file names must be <digit>_<speaker>_<n>.<ext>")
    return parts[1]


def make_espeak(folder: Path, *, per_speaker: int, seed: int) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s, voice in enumerate(ESPEAK_SPEAKERS):
        for n in range(per_speaker):
            digits = rng.integers(0, 10, size=3)
            text = " ".join(WORDS[d] for d in digits)
            speed = int(rng.integers(140, 180))
            out = folder / f"{digits[0]}_spk{s}_{n}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True,
                           capture_output=True)


def make_synthetic(folder: Path, *, per_speaker: int, seed: int) -> None:
    import soundfile as sf

    from audiosim.engine.audio.voices import speaker_clip

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    speakers = [(float(rng.uniform(90, 250)), float(rng.uniform(0.9, 1.25))) for _ in range(8)]
    for s, (f0, scale) in enumerate(speakers):
        for n in range(per_speaker):
            x = speaker_clip(f0=f0, formant_scale=scale, seed=int(rng.integers(1 << 30)), seconds=2.5)
            sf.write(folder / f"{n % 10}_syn{s}_{n}.wav", x, 16000)


def measure(folder: Path, *, embedder: str, weights: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-speaker-") as tmp:
        t0 = time.perf_counter()
        report = audiosim.index_folder(folder, Path(tmp) / "c", embedder=embedder, weights=weights, label_from="none")
        index_s = time.perf_counter() - t0
        coll = open_collection(Path(tmp) / "c")
        searcher = coll.searcher()
        items = coll.items()
        speakers = [speaker_of(items.paths[int(c)]) for c in items.path_code]
        counts = Counter(speakers)
        correct = 0
        for i, item_id in enumerate(items.ids.tolist()):
            hit = searcher.search(id=int(item_id), k=1, exclude_same_file=True)[0]
            correct += speaker_of(hit.path) == speakers[i]
        n = len(speakers)
        chance = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
        return {"files": n, "speakers": len(counts), "failed": len(report.failures), "p_at_1": round(correct / n, 4),
                "chance_p_at_1": round(chance, 4), "index_s": round(index_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, help="clips named <digit>_<speaker>_<n>.<ext>")
    ap.add_argument("--embedder", default="voice")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--make-espeak", type=Path, help="write an espeak-ng speaker folder here and exit")
    ap.add_argument("--make-synthetic", type=Path, help="write a synthetic source-filter speaker folder here and exit")
    ap.add_argument("--per-speaker", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.make_espeak:
        make_espeak(a.make_espeak, per_speaker=a.per_speaker, seed=a.seed)
        return
    if a.make_synthetic:
        make_synthetic(a.make_synthetic, per_speaker=a.per_speaker, seed=a.seed)
        return
    if a.folder is None:
        ap.error("give --folder (or --make-espeak / --make-synthetic DIR to write one)")
    result = measure(a.folder, embedder=a.embedder, weights=a.weights)
    result.update(folder=str(a.folder), embedder=a.embedder, machine=f"{platform.machine()} {platform.system()}, "
                  f"{__import__('os').cpu_count()} CPUs", python=sys.version.split()[0])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

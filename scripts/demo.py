"""The quick-start demo: make a folder of synthetic sounds, index it, query one clip.

Uses YAMNet when its weights resolve (``$AUDIOSIM_MODELS/yamnet``, the user cache, or a
download when online) and the weight-free ``logmel`` baseline otherwise, and says which.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def pick_embedder() -> tuple[str, str]:
    from audiosim.engine.models.embedders.yamnet import resolve_yamnet_weights
    from audiosim.errors import AudiosimError

    try:
        backend, location = resolve_yamnet_weights(None)
        return "yamnet", f"YAMNet weights found ({backend}: {location})"
    except AudiosimError as e:
        from audiosim.engine.models.weights import without_baseline_hint

        why = without_baseline_hint(str(e), instead="Then run `make demo` again.")
        return "logmel", f"YAMNet weights not available, so the weight-free logmel baseline is used instead. {why}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="/tmp/audiosim-demo", help="Work folder (recreated).")
    ap.add_argument("--per-kind", type=int, default=6)
    args = ap.parse_args()
    from audiosim.engine.audio.synth import write_demo_folder

    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    sounds, coll = work / "sounds", work / "collection"
    paths = write_demo_folder(sounds, per_kind=args.per_kind, seed=0)
    print(f"wrote {len(paths)} synthetic clips (tone, chirp, noise, clicks, hum; wav/flac/ogg; 16-48 kHz; mono and stereo) to {sounds}")
    embedder, why = pick_embedder()
    print(f"embedder: {embedder} -- {why}")
    cli = [sys.executable, "-m", "audiosim"]
    subprocess.run(cli + ["index", str(sounds), "--collection", str(coll), "--embedder", embedder], check=True)
    query = sorted((sounds / "chirp").iterdir())[1]
    print(f"\nquery: {query}")
    subprocess.run(cli + ["query", str(query), "--collection", str(coll), "-k", "8"], check=True)
    print(f"""
next, try (in a shell where `source .venv/bin/activate` was run):
  audiosim info --collection {coll}
  audiosim query {query} --collection {coll} -k 5 --label hum           # only hums (the filter runs inside the index)
  audiosim query {query} --collection {coll} -k 5 --exclude-same-file --json
  audiosim index YOUR_FOLDER --collection ~/idx/mine --embedder {embedder}   # your own recordings
  python -c "import audiosim; help(audiosim)"                               # the Python API""")


if __name__ == "__main__":
    main()

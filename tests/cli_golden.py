"""Runs the core commands on the synthetic demo folder and normalises what they print, for the golden test.

Paths become ``<FOLDER>`` / ``<COLL>``; timings, timestamps and versions are masked. The golden file
``tests/golden/cli_outputs.json`` was written by :func:`capture` from the code before the library
refactor, so the test proves the command line prints the same things for the same inputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

GOLDEN = Path(__file__).parent / "golden" / "cli_outputs.json"
TIMING_KEYS = ("seconds", "clips_per_s", "created", "updated", "audiosim_version")


def _mask_text(text: str, folder: Path, coll: Path) -> str:
    text = text.replace(str(coll), "<COLL>").replace(str(folder), "<FOLDER>")
    text = re.sub(r"in [0-9.]+ s = [0-9.]+ clips/s", "in <T> s = <R> clips/s", text)
    return text


def _mask_json(obj, folder: Path, coll: Path):
    if isinstance(obj, dict):
        return {k: ("<MASKED>" if k in TIMING_KEYS else _mask_json(v, folder, coll)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_json(v, folder, coll) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(coll), "<COLL>").replace(str(folder), "<FOLDER>")
    return obj


def capture(folder: Path, work: Path) -> dict:
    """Every command's normalised output, keyed by a short name."""
    from audiosim.cli import main

    def run(*args):
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    out: dict = {}
    coll = work / "coll"
    out["index_text"] = _mask_text(run("index", folder, "--collection", coll, "--embedder", "logmel", "--quiet"), folder, coll)
    coll2 = work / "coll_json"
    out["index_json"] = _mask_json(json.loads(run("index", folder, "--collection", coll2, "--embedder", "logmel",
                                                  "--pooling", "mu+sigma", "--json", "--quiet")), folder, coll2)
    query = folder / "chirp" / "chirp_01.flac"
    out["query_text"] = _mask_text(run("query", query, "--collection", coll, "-k", "6"), folder, coll)
    out["query_json"] = _mask_json(json.loads(run("query", query, "--collection", coll2, "-k", "5", "--json")), folder, coll2)
    out["info_text"] = _mask_text(run("info", "--collection", coll), folder, coll)
    out["info_json"] = _mask_json(json.loads(run("info", "--collection", coll, "--json")), folder, coll)
    out["embedders"] = run("embedders")
    return out


if __name__ == "__main__":  # regenerate: python tests/cli_golden.py (only when an output change is intended)
    import tempfile

    from audiosim.engine.audio.synth import write_demo_folder

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "demo"
        write_demo_folder(folder, per_kind=4, seed=7)
        GOLDEN.write_text(json.dumps(capture(folder, Path(d)), indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")

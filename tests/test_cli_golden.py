"""The command line prints what it printed before the library refactor, for the same inputs.

The golden outputs (tests/golden/cli_outputs.json) were captured from the pre-refactor code by
tests/cli_golden.py. Text output must match exactly (timings masked); JSON documents must hold
every golden key with the same value (floats to 1e-5); new keys may be added.
"""

from __future__ import annotations

import json
import math

from cli_golden import GOLDEN, capture


def _contains(golden, got, where="$"):
    if isinstance(golden, dict):
        assert isinstance(got, dict), where
        for k, v in golden.items():
            assert k in got, f"{where}.{k} missing"
            _contains(v, got[k], f"{where}.{k}")
    elif isinstance(golden, list):
        assert isinstance(got, list) and len(got) == len(golden), where
        for i, (a, b) in enumerate(zip(golden, got)):
            _contains(a, b, f"{where}[{i}]")
    elif isinstance(golden, float):
        assert isinstance(got, (int, float)) and math.isclose(golden, got, rel_tol=1e-5, abs_tol=1e-6), (where, golden, got)
    else:
        assert golden == got, (where, golden, got)


def test_outputs_match_the_pre_refactor_golden_files(demo_folder, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    got = capture(demo_folder, tmp_path)
    assert set(got) == set(golden)
    for name, want in golden.items():
        if isinstance(want, str):
            assert got[name] == want, name
        else:
            _contains(want, got[name], name)

"""`bench` reports progress after its embedding bar (issue 21 item 12): one stderr line per stage of every variant,
on a fake ESC-50 of synthetic sounds (tests/test_bench.py's ``write_fake_esc50``) embedded with ``logmel``."""

from __future__ import annotations

import re

from test_bench import write_fake_esc50

from audiosim.eval import bench as B


def test_every_variant_stage_prints_a_progress_line(tmp_path, capsys):
    esc = write_fake_esc50(tmp_path / "esc50")
    cfg = B.BenchConfig(embedder="logmel", out=str(tmp_path / "run"), poolings=("mu",), postprocess=(None, "center"),
                        esc50=str(esc), cache=str(tmp_path / "cache"), n_boot=20, plots=False, progress=True)
    B.run_benchmark(cfg)
    lines = [re.sub(r"^bench \d\d:\d\d:\d\d ", "", ln) for ln in capsys.readouterr().err.splitlines()
             if ln.startswith("bench ")]
    assert lines[:4] == ["[1/2] mu: pooling", "[1/2] mu: retrieval metrics (loo, xfold; bootstrap 20)",
                         "[1/2] mu: linear probes (logistic regression, SVM) on the 5 folds", lines[3]]
    assert re.fullmatch(r"\[1/2\] mu: done in [0-9.]+ s", lines[3])
    assert lines[4] == "[2/2] mu | center: pooling and post-processing"
    assert lines[-1] == f"writing results, report to {tmp_path / 'run'}"
    B.run_benchmark(cfg.__class__(**{**cfg.__dict__, "progress": False, "out": str(tmp_path / "quiet")}))
    assert "bench " not in capsys.readouterr().err

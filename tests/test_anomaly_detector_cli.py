"""The CLI end to end on a SYNTHETIC DCASE 2023-layout tree: synth-machines, eval --detector, compare,
fit-detector and score --model."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from audiosim.cli import main


def _run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_synth_eval_compare_fit_score(tmp_path):
    data = tmp_path / "synthetic"
    code, out = _run("datasets", "synth-machines", data, "--year", "2023", "--machine", "fan", "--ids", "2",
                     "--train", "6", "--target-train", "2", "--test", "4", "--strength", "3", "--duration", "1.5")
    assert code == 0 and "SYNTHETIC" in out
    assert (data / "fan" / "attributes_01.csv").is_file() and (data / "SYNTHETIC.txt").is_file()

    run_a = tmp_path / "a"
    code, out = _run("anomaly", "eval", data, "--detector", "embedding", "--detector", "metric:epochs=2,batch=32",
                     "--out", run_a, "--bootstrap", "20", "--quiet")
    assert code == 0, out
    res = json.loads((run_a / "results.json").read_text())
    assert res["year"] == 2022 and res["layout"] == "sections" and res["synthetic"] is True
    emb = res["detectors"]["embedding"]
    assert {(g["section"], g["domain"]) for g in emb["groups"]} == {(s, d) for s in ("00", "01")
                                                                   for d in ("source", "target", "all")}
    assert 0 <= emb["official"]["score"] <= 1 and len(emb["bootstrap"]["score"]) == 2
    assert {(t["a"], t["b"]) for t in res["delong"]} == {("embedding", "metric:epochs=2,batch=32")}
    assert all(0 <= t["p"] <= t["p_holm"] <= 1 for t in res["delong"])
    assert (run_a / "roc_embedding.png").stat().st_size > 1000 and (run_a / "hist_embedding.png").is_file()
    rows = list(csv.DictReader(open(run_a / "scores.csv")))
    assert len(rows) == 2 * 2 * 2 * 8 and {r["verdict"] for r in rows} <= {"normal", "anomalous"}
    assert res["features"]["reused"] > 0  # the second detector reused the first one's features
    assert "official 2022 score" in out

    run_b = tmp_path / "b"
    assert _run("anomaly", "eval", data, "--detector", "embedding:mode=frames,scorer=knn", "--out", run_b,
                "--bootstrap", "0", "--no-plots", "--quiet")[0] == 0
    code, out = _run("anomaly", "compare", run_a, run_b, "--json")
    assert code == 0
    tests = json.loads(out)["tests"]
    assert {t["b"] for t in tests} == {"B:embedding:mode=frames,scorer=knn"} and len(tests) == 2 * 2

    model = tmp_path / "model"
    train = data / "fan" / "train"
    code, out = _run("anomaly", "fit-detector", train, "--detector", "id_classifier:epochs=1,batch=32", "--out", model)
    assert code == 0 and "threshold" in out, out
    clip = sorted((data / "fan" / "test").glob("section_01_*anomaly*.wav"))[0]
    code, out = _run("anomaly", "score", clip, "--model", model, "--json")
    assert code == 0
    r = json.loads(out)["results"][0]
    assert r["verdict"] in ("normal", "anomalous") and r["threshold"] == json.loads(out)["threshold"]


def test_cli_errors_are_one_line(tmp_path):
    code, out = _run("anomaly", "score", __file__, "--model", tmp_path)
    assert code == 2 and "cannot read the detector" in out
    data = tmp_path / "d"
    _run("datasets", "synth-machines", data, "--machine", "pump", "--ids", "1", "--train", "2", "--test", "1",
         "--duration", "0.5")
    code, out = _run("anomaly", "eval", data, "--detector", "ae:epochs=1", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and "at least 3 normal training clips" in out

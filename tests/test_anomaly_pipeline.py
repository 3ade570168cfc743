"""End to end: a DCASE-layout folder of synthetic machine sounds, the eval runner and CLI, fit/score on a collection."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiosim.cli import main
from audiosim.engine.audio.synth import machine_hum, tone
from audiosim.errors import DatasetError
from audiosim.eval.dcase import DcaseConfig, run_dcase_eval, scan_dcase

SR = 16000
ANOMALIES = ("clicks", "rub")


def _write(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, subtype="PCM_16")


@pytest.fixture(scope="module")
def dcase_dir(tmp_path_factory) -> Path:
    """fan/ with machine IDs 00 (50 Hz hum) and 02 (60 Hz): 12 normal train clips each; test 4 normal + 4 faulty."""
    root = tmp_path_factory.mktemp("dcase")
    rng = np.random.default_rng(11)
    for mid, f0 in (("00", 50.0), ("02", 60.0)):
        for i in range(12):
            _write(root / "fan" / "train" / f"normal_id_{mid}_{i:08d}.wav", machine_hum(f0=f0, duration_s=2.0, rng=rng))
        for i in range(4):
            _write(root / "fan" / "test" / f"normal_id_{mid}_{i:08d}.wav", machine_hum(f0=f0, duration_s=2.0, rng=rng))
            _write(root / "fan" / "test" / f"anomaly_id_{mid}_{i:08d}.wav",
                   machine_hum(f0=f0, duration_s=2.0, anomaly=ANOMALIES[i % 2], rng=rng))
    (root / "fan" / "test" / "README.txt").write_text("not audio, ignored")
    return root


def test_scan_dcase_layout(dcase_dir, tmp_path):
    clips = scan_dcase(dcase_dir)
    assert len(clips) == 40
    assert {c.machine for c in clips} == {"fan"} and {c.machine_id for c in clips} == {"00", "02"}
    assert sum(c.split == "train" for c in clips) == 24
    assert sum(c.anomalous for c in clips) == 8 and not any(c.anomalous for c in clips if c.split == "train")
    assert len(scan_dcase(dcase_dir / "fan")) == 40  # a single machine folder works too
    bad = tmp_path / "pump" / "train"
    bad.mkdir(parents=True)
    shutil.copy(next((dcase_dir / "fan" / "test").glob("anomaly_*.wav")), bad / "anomaly_id_00_00000000.wav")
    with pytest.raises(DatasetError, match="anomalous clip in train"):
        scan_dcase(tmp_path)
    with pytest.raises(DatasetError, match="no DCASE clips"):
        scan_dcase(tmp_path / "pump" / "train")


def test_eval_cli_separates_synthetic_faults(dcase_dir, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["anomaly", "eval", str(dcase_dir), "--embedder", "logmel", "--scorer", "mahalanobis",
                                    "--scorer", "knn:k=3,metric=cosine", "--scorer", "lof:k=5", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["scorers"]) == {"mahalanobis:covariance=ledoitwolf", "knn:k=3,metric=cosine,reduce=mean",
                                       "lof:k=5,metric=cosine"}
    for spec, entry in results["scorers"].items():
        assert entry["overall"]["n_groups"] == 2
        assert entry["overall"]["auc_mean"] > 0.9, (spec, entry["overall"])
        assert entry["machines"]["fan"]["auc_hmean"] > 0.9
        assert {g["machine_id"] for g in entry["groups"]} == {"00", "02"}
        assert (out / entry["roc_png"]).read_bytes()[:4] == b"\x89PNG"
    assert results["clips"] == {"train": 24, "test_normal": 8, "test_anomalous": 8}
    report = (out / "report.md").read_text()
    assert "| fan | 00 |" in report and "harmonic mean" in report
    rows = (out / "anomaly_scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 16


def test_eval_runner_fit_per_machine(dcase_dir, tmp_path):
    results = run_dcase_eval(dcase_dir, tmp_path / "o", DcaseConfig(embedder="logmel", pooling="mu+sigma",
                             scorers=("mahalanobis:covariance=oas",), fit_per="machine", progress=False, plots=False))
    entry = results["scorers"]["mahalanobis:covariance=oas"]
    assert results["dim"] == 2 * 168 and results["fit_per"] == "machine"
    assert all(f["n_train"] == 24 for f in entry["fits"].values())
    assert entry["overall"]["auc_mean"] > 0.9
    assert "roc_png" not in entry


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, Path]:
    """A logmel collection of 12 normal hums (label 'normal') and 4 tones (label 'tone'), plus query clips."""
    base = tmp_path_factory.mktemp("coll")
    rng = np.random.default_rng(5)
    for i in range(12):
        _write(base / "data" / "normal" / f"hum_{i:02d}.wav", machine_hum(duration_s=2.0, rng=rng))
    for i in range(4):
        _write(base / "data" / "tone" / f"tone_{i:02d}.wav", tone(freq=float(rng.uniform(300, 900)), harmonics=3, rng=rng))
    for i in range(3):
        _write(base / "queries" / f"normal_{i}.wav", machine_hum(duration_s=2.0, rng=rng))
    _write(base / "queries" / "rub.wav", machine_hum(duration_s=2.0, anomaly="rub", rng=rng))
    _write(base / "queries" / "clicks.wav", machine_hum(duration_s=2.0, anomaly="clicks", rng=rng))
    res = CliRunner().invoke(main, ["index", str(base / "data"), "--collection", str(base / "c"), "--embedder", "logmel",
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    return base / "c", base / "queries"


@pytest.mark.parametrize("scorer", ["mahalanobis", "knn"])
def test_cli_fit_score_round_trip(collection, scorer):
    from audiosim.engine.store.store import CollectionStore
    from audiosim.anomaly.scorers import load_scorer, make_scorer

    coll_dir, queries = collection
    runner = CliRunner()
    res = runner.invoke(main, ["anomaly", "fit", "--collection", str(coll_dir), "--where", "label=normal",
                               "--scorer", scorer, "--json"])
    assert res.exit_code == 0, res.output
    fitted = json.loads(res.output)
    assert fitted["n_train"] == 12 and fitted["where"] == {"label": ["normal"]}
    # The saved model equals a model fitted here on the same stored vectors.
    coll = CollectionStore.open(coll_dir)
    ids, X = coll.embeddings()
    labels = {r["id"]: r["label"] for r in coll.records(("label",))}
    Xn = X[[labels[int(i)] == "normal" for i in ids]]
    saved, meta = load_scorer(coll_dir / "anomaly")
    ref = make_scorer(scorer).fit(Xn)
    np.testing.assert_array_equal(saved.anomaly_score(X), ref.anomaly_score(X))
    assert saved.threshold_ == ref.threshold_ == fitted["threshold"]
    assert meta["extra"]["n_vectors"] == 12 and meta["extra"]["space"] == "stored"

    clips = sorted(str(p) for p in queries.glob("normal_*.wav")) + [str(queries / "rub.wav"), str(queries / "clicks.wav")]
    res = runner.invoke(main, ["anomaly", "score", *clips, "--collection", str(coll_dir), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert not out["model_stale"]
    verdicts = {Path(r["clip"]).name: r["verdict"] for r in out["results"]}
    scores = {Path(r["clip"]).name: r["score"] for r in out["results"]}
    assert verdicts["rub.wav"] == verdicts["clicks.wav"] == "anomalous"
    assert sum(v == "normal" for k, v in verdicts.items() if k.startswith("normal_")) >= 2
    assert min(scores["rub.wav"], scores["clicks.wav"]) > max(s for k, s in scores.items() if k.startswith("normal_"))
    assert all(r["threshold"] == fitted["threshold"] for r in out["results"])
    # Scoring a stored clip through the CLI reproduces the stored vector's score (same embedder and pooling).
    stored = next(r for r in coll.records(("path", "label")) if r["label"] == "tone")
    res = runner.invoke(main, ["anomaly", "score", stored["path"], "--collection", str(coll_dir), "--json"])
    got = json.loads(res.output)["results"][0]["score"]
    assert got == pytest.approx(float(saved.anomaly_score(X[list(ids).index(stored["id"])])[0]), rel=1e-5)
    # Text output.
    res = runner.invoke(main, ["anomaly", "score", str(queries / "rub.wav"), "--collection", str(coll_dir)])
    assert res.exit_code == 0 and "anomalous" in res.output and "threshold" in res.output


def test_cli_fit_errors(collection, tmp_path):
    coll_dir, _ = collection
    runner = CliRunner()
    res = runner.invoke(main, ["anomaly", "fit", "--collection", str(coll_dir), "--where", "label=missing"])
    assert res.exit_code == 2 and "at least 4" in res.output and "normal" in res.output
    res = runner.invoke(main, ["anomaly", "fit", "--collection", str(coll_dir), "--where", "path=x"])
    assert res.exit_code == 2 and "label=VALUE" in res.output
    res = runner.invoke(main, ["anomaly", "fit", "--collection", str(coll_dir), "--scorer", "forest"])
    assert res.exit_code == 2 and "unknown scorer" in res.output
    empty = tmp_path / "c2"
    shutil.copytree(coll_dir, empty)
    shutil.rmtree(empty / "anomaly", ignore_errors=True)
    res = runner.invoke(main, ["anomaly", "score", str(next((coll_dir.parent / "queries").glob("*.wav"))),
                               "--collection", str(empty)])
    assert res.exit_code == 2 and "anomaly fit" in res.output


def test_segmented_collection_scores_each_segment(collection, tmp_path):
    coll_dir, queries = collection
    data = coll_dir.parent / "data"
    runner = CliRunner()
    seg = tmp_path / "seg"
    res = runner.invoke(main, ["index", str(data / "normal"), "--collection", str(seg), "--embedder", "logmel",
                               "--segment", "1.0", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["anomaly", "fit", "--collection", str(seg), "--scorer", "knn:k=3", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_train"] == 24  # 12 clips x two 1-s segments
    res = runner.invoke(main, ["anomaly", "score", str(queries / "rub.wav"), str(queries / "normal_0.wav"),
                               "--collection", str(seg), "--json"])
    assert res.exit_code == 0, res.output
    rub, normal = json.loads(res.output)["results"]
    assert len(rub["segments"]) == 2 and rub["score"] == max(x["score"] for x in rub["segments"])
    assert rub["verdict"] == "anomalous" and rub["score"] > normal["score"]


def test_real_pump_clips_smoke(tmp_path):
    """The two DCASE 2020 pump clips (id 06): 1-s cuts of the normal clip's first 6 s train, the rest tests."""
    base = os.environ.get("DCASE_PUMP_SAMPLE")
    if not base:
        pytest.skip("DCASE_PUMP_SAMPLE is not set: point it at the folder holding the two DCASE 2020 pump clips "
                    "(.ci/run sets it from ../shared/datasets/dcase2020_pump_sample)")
    normal = Path(base) / "normal_id_06_00000933.wav"
    anomaly = Path(base) / "anomaly_id_06_00000100.wav"
    if not (normal.is_file() and anomaly.is_file()):
        pytest.skip(f"{base} lacks normal_id_06_00000933.wav / anomaly_id_06_00000100.wav")
    from audiosim.engine.audio.decode import load_audio

    x = load_audio(normal, sample_rate=SR)
    a = load_audio(anomaly, sample_rate=SR)
    assert x.size == a.size == 10 * SR
    root = tmp_path / "pump"
    for i in range(6):
        _write(root / "train" / f"normal_id_06_{i:08d}.wav", x[i * SR:(i + 1) * SR])
    for i in range(6, 10):
        _write(root / "test" / f"normal_id_06_{i:08d}.wav", x[i * SR:(i + 1) * SR])
    for i in range(4):
        _write(root / "test" / f"anomaly_id_06_{i:08d}.wav", a[i * SR:(i + 1) * SR])
    results = run_dcase_eval(root, tmp_path / "out", DcaseConfig(embedder="logmel", scorers=("mahalanobis", "knn:k=3"),
                                                                 progress=False))
    for entry in results["scorers"].values():
        [g] = entry["groups"]
        assert (g["machine"], g["machine_id"], g["n_normal"], g["n_anomaly"]) == ("pump", "06", 4, 4)
        assert 0.0 <= g["auc"] <= 1.0 and 0.0 <= g["pauc"] <= 1.0
    assert (tmp_path / "out" / "report.md").is_file()


@pytest.mark.slow
def test_vae_reconstruction_scorer(dcase_dir, tmp_path):
    pytest.importorskip("torch")
    from audiosim.eval.dcase import VaeScorer

    spec = VaeScorer.parse("vae:epochs=2,latent=4,channels=4-8")
    assert spec == VaeScorer(epochs=2, latent=4, channels=(4, 8)) and VaeScorer.parse(spec.spec) == spec
    with pytest.raises(DatasetError, match="bad VAE scorer"):
        VaeScorer.parse("vae:depth=3")
    results = run_dcase_eval(dcase_dir, tmp_path / "o", DcaseConfig(scorers=(spec.spec,), progress=False, plots=False))
    entry = results["scorers"][spec.spec]
    assert results["dim"] is None  # no embedding scorer: nothing was embedded
    assert set(entry["vae"]) == {"fan_id_00", "fan_id_02"}
    assert all((tmp_path / "o" / "vae" / name / "vae.pt").is_file() for name in entry["vae"])
    # Rubbing and clicks put energy where the normal hum has little: reconstruction error separates them.
    assert entry["overall"]["auc_mean"] > 0.8, entry["overall"]
    assert all(np.isfinite(f["threshold"]) for f in entry["fits"].values())

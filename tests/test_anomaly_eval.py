"""AUC / pAUC against hand-computed values and scikit-learn; means; the ROC plot; the novelty loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audiosim.errors import AudiosimError
from audiosim.eval.anomaly_metrics import auc_pauc, group_metrics, hmean, markdown_table, roc_png, summarize

# 10 normal clips, 2 anomalous ones (y = 1).
Y = np.array([0] * 10 + [1, 1])


def _mcclish(area: float, max_fpr: float = 0.1) -> float:
    lo, hi = 0.5 * max_fpr ** 2, max_fpr
    return 0.5 * (1 + (area - lo) / (hi - lo))


def test_one_normal_clip_above_both_anomalies():
    # The top score is a normal clip: the ROC reaches FPR 0.1 with TPR 0, then jumps to TPR 1.
    s = np.array([0.95] + [0.1 * i for i in range(9)] + [0.9, 0.85])
    auc, pauc = auc_pauc(Y, s)
    assert auc == pytest.approx(18 / 20)  # 2 of the 20 (anomalous, normal) pairs are misordered
    assert pauc == pytest.approx(_mcclish(0.0))  # no area below FPR 0.1: 0.5 * (1 - 0.005 / 0.095)
    assert pauc == pytest.approx(0.4736842105263158)
    assert (auc, pauc) == pytest.approx((roc_auc_score(Y, s), roc_auc_score(Y, s, max_fpr=0.1)))


def test_one_normal_clip_between_the_anomalies():
    # anomaly, normal, anomaly, then the other normals: TPR 0.5 over FPR [0, 0.1] -> raw area 0.05.
    s = np.array([0.9] + [0.1 * i for i in range(9)] + [0.95, 0.85])
    auc, pauc = auc_pauc(Y, s)
    assert auc == pytest.approx(19 / 20)
    assert pauc == pytest.approx(_mcclish(0.05))
    assert pauc == pytest.approx(0.7368421052631579)
    assert (auc, pauc) == pytest.approx((roc_auc_score(Y, s), roc_auc_score(Y, s, max_fpr=0.1)))


def test_perfect_and_random_like(rng):
    s = np.r_[np.zeros(10), np.ones(2)]
    assert auc_pauc(Y, s) == (1.0, 1.0)
    y = rng.integers(0, 2, 200)
    sc = rng.standard_normal(200)
    assert auc_pauc(y, sc) == pytest.approx((roc_auc_score(y, sc), roc_auc_score(y, sc, max_fpr=0.1)))
    assert auc_pauc(y, sc, max_fpr=0.2)[1] == pytest.approx(roc_auc_score(y, sc, max_fpr=0.2))


def test_auc_needs_both_classes_and_finite_scores():
    with pytest.raises(AudiosimError, match="both"):
        auc_pauc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(AudiosimError, match="NaN"):
        auc_pauc([0, 1], [0.1, np.nan])
    with pytest.raises(AudiosimError, match="labels"):
        auc_pauc([0, 1, 1], [0.1, 0.2])


def test_harmonic_and_arithmetic_means():
    assert hmean([0.5, 1.0]) == pytest.approx(2 / 3)  # 2 / (1/0.5 + 1/1)
    assert hmean([0.0, 1.0]) == 0.0
    g = [group_metrics("fan", "00", [0, 1], [0.0, 1.0]),  # AUC 1
         group_metrics("fan", "02", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]),  # 3 of 4 pairs -> AUC 0.75
         group_metrics("pump", "00", [0, 1], [1.0, 0.0])]  # AUC 0
    assert [x.auc for x in g] == pytest.approx([1.0, 0.75, 0.0])
    assert (g[1].n_normal, g[1].n_anomaly) == (2, 2)
    s = summarize(g)
    assert s["machines"]["fan"]["auc_mean"] == pytest.approx(0.875)
    assert s["machines"]["fan"]["auc_hmean"] == pytest.approx(2 / (1 + 1 / 0.75))
    assert s["machines"]["pump"]["auc_hmean"] == 0.0
    assert s["overall"]["auc_mean"] == pytest.approx(1.75 / 3)
    assert s["overall"]["n_groups"] == 3
    table = markdown_table(g)
    assert "| fan | 02 | 2 | 2 | 0.7500 |" in table and "harmonic mean" in table


def test_roc_png(tmp_path):
    s = np.array([0.9] + [0.1 * i for i in range(9)] + [0.95, 0.85])
    out = roc_png({"a": (Y, s), "b": (Y, -s)}, tmp_path / "roc.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_novelty_loop_on_synthetic_clusters(rng):
    from audiosim.eval.novelty import novelty_aucs, summarize_classes

    # 3 well separated classes, 10 clips each over 5 folds: every class detects the others as novel.
    centers = rng.standard_normal((3, 8)) * 10
    targets = np.repeat(np.arange(3), 10)
    folds = np.tile(np.arange(1, 6), 6)
    X = centers[targets] + rng.standard_normal((30, 8))
    classes, auc, pauc = novelty_aucs(X, targets, folds, "knn:k=1,metric=euclidean")
    assert classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(auc, 1.0)
    np.testing.assert_allclose(pauc, 1.0)
    # Each class trains on its 8 clips outside fold 5 and is tested on the 6 fold-5 clips (2 normal, 4 novel).
    X_bad = rng.standard_normal((30, 8))
    _, auc_bad, _ = novelty_aucs(X_bad, targets, folds, "mahalanobis")
    assert 0.0 <= auc_bad.min() and auc_bad.max() <= 1.0
    summ = summarize_classes(auc, pauc)
    assert summ["auc_mean"] == 1.0 and summ["auc_ci95"] == (1.0, 1.0)


def test_run_novelty_writes_results_and_report(tmp_path, monkeypatch, rng):
    """The benchmark driver on a stand-in for ESC-50 (4 classes x 10 clips over 5 folds)."""
    import json

    import audiosim.eval.esc50_cache as bench
    from audiosim.eval.esc50 import Esc50, Esc50Clip
    from audiosim.eval.novelty import NoveltyConfig, parse_weights, run_novelty

    clips = tuple(Esc50Clip(path=f"/x/{i}.wav", filename=f"{i}.wav", fold=i % 5 + 1, target=i // 10,
                            category=f"class{i // 10}", super_target=0, src_file=str(i), take="A") for i in range(40))
    esc = Esc50(root=tmp_path, clips=clips)
    centers = rng.standard_normal((4, 16)) * 5
    calls = []

    def fake_vectors(*, embedder, pooling, weights=None, esc50=None, cache=None, progress=True, embedder_options=None):
        calls.append((embedder, pooling, weights))
        return esc, (centers[esc.targets] + rng.standard_normal((40, 16))).astype(np.float32)

    import audiosim.eval.novelty as novelty_mod

    monkeypatch.setattr(bench, "esc50_vectors", fake_vectors)
    monkeypatch.setattr(novelty_mod, "esc50_vectors", fake_vectors)  # novelty looks it up by the name it imported
    out = tmp_path / "nov"
    res = run_novelty(NoveltyConfig(out=str(out), embedders=("a", "b"), poolings=("mu", "l2mean"),
                                    scorers=("mahalanobis", "knn:k=3"), weights={"a": "/w"}, progress=False))
    assert calls == [("a", "mu", "/w"), ("a", "l2mean", "/w"), ("b", "mu", None), ("b", "l2mean", None)]
    assert len(res["runs"]) == 8
    run = res["runs"][0]
    assert set(run["per_class"]) == {"class0", "class1", "class2", "class3"}
    assert run["auc_mean"] == pytest.approx(np.mean([v["auc"] for v in run["per_class"].values()]))
    assert run["auc_mean"] > 0.9
    assert set(res["best"]) == {"a", "b"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["best"] == json.loads(json.dumps(res["best"]))
    report = (out / "report.md").read_text()
    assert "| a | mu | `mahalanobis:covariance=ledoitwolf` |" in report and "## Best per embedder" in report
    assert parse_weights(["a=/p", "b=/q"], ["a", "b"]) == {"a": "/p", "b": "/q"}
    assert parse_weights(["/p"], ["yamnet"]) == {"yamnet": "/p"}
    with pytest.raises(AudiosimError, match="NAME=PATH"):
        parse_weights(["/p"], ["a", "b"])

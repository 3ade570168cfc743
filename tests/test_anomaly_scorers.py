"""Golden checks of the anomaly scorers against scikit-learn, numpy brute force and hand values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf
from sklearn.neighbors import LocalOutlierFactor

from audiosim.errors import AnomalyModelError
from audiosim.anomaly.scorers import AnomalyScorer, ScorerConfig, load_scorer, make_scorer


@pytest.fixture
def data(rng):
    scales = rng.uniform(0.2, 3.0, 12)
    X = rng.standard_normal((60, 12)) * scales + rng.standard_normal(12)
    Q = rng.standard_normal((15, 12)) * 2.0
    return X, Q


def test_mahalanobis_one_dimensional_by_hand():
    # mean 2, biased variance 2: squared distance (x - 2)^2 / 2.
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    s = make_scorer("mahalanobis:covariance=empirical", percentile=50).fit(X)
    np.testing.assert_allclose(s.anomaly_score([[6.0], [2.0], [1.0]]), [8.0, 0.0, 0.5], atol=1e-12)
    # Training scores leave each point out (5 points < 10 folds): x=0 vs {1,2,3,4} (mean 2.5, variance 1.25)
    # -> 6.25 / 1.25 = 5; x=1 vs {0,2,3,4} (mean 2.25, variance 2.1875) -> 1.5625 / 2.1875 = 5/7; x=2 -> 0.
    np.testing.assert_allclose(s.train_scores_, [5.0, 5 / 7, 0.0, 5 / 7, 5.0], atol=1e-12)
    assert s.threshold_ == pytest.approx(5 / 7)
    np.testing.assert_array_equal(s.predict([[2.5], [3.5]]), [1, -1])  # 0.125 <= 5/7 < 1.125


def test_mahalanobis_training_scores_are_cross_fitted(rng):
    X = rng.standard_normal((23, 4))
    s = make_scorer("mahalanobis:covariance=oas").fit(X)
    fold = np.arange(23) % 10
    for f in (0, 2, 9):
        ref = OAS().fit(X[fold != f])
        np.testing.assert_allclose(s.train_scores_[fold == f], ref.mahalanobis(X[fold == f]), rtol=1e-9)


@pytest.mark.parametrize("cov,ref_cls", [("empirical", EmpiricalCovariance), ("ledoitwolf", LedoitWolf), ("oas", OAS)])
def test_mahalanobis_matches_sklearn_squared_distance(data, cov, ref_cls):
    X, Q = data
    s = make_scorer(f"mahalanobis:covariance={cov}").fit(X)
    ref = ref_cls().fit(X)
    # sklearn's .mahalanobis returns SQUARED distances; so does our anomaly_score.
    np.testing.assert_allclose(s.anomaly_score(Q), ref.mahalanobis(Q), rtol=1e-9)
    np.testing.assert_allclose(s.location_, ref.location_, rtol=1e-12)
    np.testing.assert_allclose(s.precision_, ref.precision_, rtol=1e-7, atol=1e-10)
    assert s.anomaly_score(ref.location_[None, :])[0] == pytest.approx(0.0, abs=1e-12)
    if cov != "empirical":
        assert s.shrinkage_ == pytest.approx(ref.shrinkage_, rel=1e-12)


def test_mahalanobis_dim_above_sample_count(rng):
    X = rng.standard_normal((20, 300))
    far = X.mean(axis=0) + 3.0 * rng.standard_normal(300)
    for cov, ref_cls in (("empirical", EmpiricalCovariance), ("ledoitwolf", LedoitWolf), ("oas", OAS)):
        s = make_scorer(f"mahalanobis:covariance={cov}").fit(X)
        Q = np.vstack([X[:3], far])
        np.testing.assert_allclose(s.anomaly_score(Q), ref_cls().fit(X).mahalanobis(Q), rtol=1e-7)
        assert s.anomaly_score(X.mean(axis=0))[0] == pytest.approx(0.0, abs=1e-9)
        assert np.isfinite(s.train_scores_).all()
        if cov != "empirical":
            assert s.shrinkage_ == pytest.approx(ref_cls().fit(X).shrinkage_, rel=1e-10)
    # Shrunk estimators rank a far point above every training point.
    s = make_scorer("mahalanobis:covariance=ledoitwolf").fit(X)
    assert s.anomaly_score(far[None, :])[0] > s.train_scores_.max()
    # In-sample, the empirical pseudo-inverse puts every training point at squared distance n - 1 when
    # dim >= n; that is why training scores are cross-fitted. Held out, a shrunk model scores fresh
    # normal points well above the in-sample distances, and the cross-fitted scores follow them.
    np.testing.assert_allclose(make_scorer("mahalanobis:covariance=empirical").fit(X)._score(X), 19.0, rtol=1e-8)
    fresh = s.anomaly_score(rng.standard_normal((50, 300)))
    assert np.median(s._score(X)) < 0.5 * np.median(fresh)
    assert 0.5 < np.median(s.train_scores_) / np.median(fresh) < 2.0


def _brute(X, Q, metric):
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        return 1.0 - Qn @ Xn.T
    return np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("reduce", ["mean", "kth"])
def test_knn_matches_brute_force(data, metric, reduce):
    X, Q = data
    k = 4
    s = make_scorer(f"knn:k={k},metric={metric},reduce={reduce}").fit(X)
    D = np.sort(_brute(X, Q, metric), axis=1)[:, :k]
    want = D.mean(axis=1) if reduce == "mean" else D[:, k - 1]
    np.testing.assert_allclose(s.anomaly_score(Q), want, rtol=1e-5, atol=1e-5)
    # Training scores leave the vector itself out.
    Dt = _brute(X, X, metric)
    np.fill_diagonal(Dt, np.inf)
    Dt = np.sort(Dt, axis=1)[:, :k]
    want_t = Dt.mean(axis=1) if reduce == "mean" else Dt[:, k - 1]
    np.testing.assert_allclose(s.train_scores_, want_t, rtol=1e-5, atol=1e-5)


def test_knn_by_hand():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    s = make_scorer("knn:k=2,metric=euclidean,reduce=mean").fit(X)
    # (3, 0): distances 3, 2, sqrt(13) -> mean of the two nearest = 2.5
    assert s.anomaly_score([[3.0, 0.0]])[0] == pytest.approx(2.5, abs=1e-6)
    # Leave-one-out training scores: [0,0] -> (1 + 2)/2, [1,0] -> (1 + sqrt 5)/2, [0,2] -> (2 + sqrt 5)/2
    np.testing.assert_allclose(s.train_scores_, [1.5, (1 + 5 ** 0.5) / 2, (2 + 5 ** 0.5) / 2], rtol=1e-6)


def test_knn_duplicates_leave_exactly_one_out():
    X = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    s = make_scorer("knn:k=1,metric=euclidean").fit(X)
    np.testing.assert_allclose(s.train_scores_, [0.0, 0.0, 0.0, 2 ** 0.5], atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_lof_matches_sklearn(data, metric):
    X, Q = data
    s = make_scorer(f"lof:k=7,metric={metric}").fit(X)
    ref = LocalOutlierFactor(n_neighbors=7, novelty=True, metric=metric).fit(X)
    np.testing.assert_allclose(s.anomaly_score(Q), -ref.score_samples(Q), rtol=1e-9)
    np.testing.assert_allclose(s.train_scores_, -ref.negative_outlier_factor_, rtol=1e-9)


SPECS = ["mahalanobis:covariance=ledoitwolf", "mahalanobis:covariance=empirical,l2=true,pca=5",
         "mahalanobis:covariance=oas", "knn:k=3,metric=cosine", "knn:k=2,metric=euclidean,reduce=kth",
         "lof:k=8,metric=euclidean", "lof:k=5,metric=cosine,pca=6"]


@pytest.mark.parametrize("spec", SPECS)
def test_fit_save_load_identical(data, tmp_path, spec):
    X, Q = data
    s = make_scorer(spec).fit(X)
    s.save(tmp_path / "m", extra={"note": "x"})
    t, meta = load_scorer(tmp_path / "m")
    assert type(t) is type(s) and t.config == s.config and meta["extra"] == {"note": "x"}
    assert meta["spec"] == ScorerConfig.parse(spec).spec
    np.testing.assert_array_equal(t.anomaly_score(Q), s.anomaly_score(Q))
    np.testing.assert_array_equal(t.train_scores_, s.train_scores_)
    assert t.threshold_ == s.threshold_
    np.testing.assert_array_equal(AnomalyScorer.load(tmp_path / "m").predict(Q), s.predict(Q))


@pytest.mark.parametrize("spec", ["mahalanobis", "knn:k=3", "lof:k=5"])
@pytest.mark.parametrize("pct", [50.0, 90.0, 99.0])
def test_threshold_is_training_percentile(data, spec, pct):
    X, Q = data
    s = make_scorer(spec, percentile=pct).fit(X)
    assert s.threshold_ == pytest.approx(np.percentile(s.train_scores_, pct))
    # Linear-interpolated percentile: at most ceil((1 - pct/100) * (n - 1)) training scores lie above it.
    n_above = int((s.train_scores_ > s.threshold_).sum())
    assert n_above == int(np.ceil((100 - pct) / 100 * (len(X) - 1) - 1e-9))
    a = s.anomaly_score(Q)
    np.testing.assert_allclose(s.score_samples(Q), -a)
    np.testing.assert_allclose(s.decision_function(Q), s.threshold_ - a)
    np.testing.assert_array_equal(s.predict(Q), np.where(a > s.threshold_, -1, 1))
    assert s.decision_function(Q) == pytest.approx(s.score_samples(Q) - s.offset_)
    s.set_percentile(100.0)
    assert s.threshold_ == pytest.approx(s.train_scores_.max())


def test_one_feature_and_constant_features(rng):
    x = rng.standard_normal((30, 1))
    for cov, ref_cls in (("ledoitwolf", LedoitWolf), ("oas", OAS)):
        s = make_scorer(f"mahalanobis:covariance={cov}").fit(x)
        np.testing.assert_allclose(s.anomaly_score(x[:5]), ref_cls().fit(x).mahalanobis(x[:5]), rtol=1e-9)
    X = np.c_[rng.standard_normal((30, 3)), np.ones(30)]  # a constant column: singular covariance
    s = make_scorer("mahalanobis:covariance=empirical").fit(X)
    np.testing.assert_allclose(s.anomaly_score(X[:5]), EmpiricalCovariance().fit(X).mahalanobis(X[:5]), rtol=1e-9)


def test_outlier_scores_above_inliers(rng):
    X = rng.standard_normal((40, 6))
    inlier, outlier = np.zeros((1, 6)), np.full((1, 6), 6.0)
    for spec in ["mahalanobis", "mahalanobis:covariance=oas", "knn:metric=euclidean", "lof:k=10,metric=euclidean"]:
        s = make_scorer(spec).fit(X)
        assert s.anomaly_score(outlier)[0] > s.threshold_ > s.anomaly_score(inlier)[0], spec
        assert s.predict(np.vstack([inlier, outlier])).tolist() == [1, -1]


def test_config_parse_and_errors(data):
    X, Q = data
    c = ScorerConfig.parse("knn:k=3,metric=euclidean,reduce=kth,l2=true,pca=4")
    assert (c.scorer, c.k, c.metric, c.reduce, c.l2, c.pca) == ("knn", 3, "euclidean", "kth", True, 4)
    assert ScorerConfig.parse(c.spec) == c
    assert ScorerConfig.parse("mahalanobis", covariance="oas").covariance == "oas"
    for bad in ["forest", "knn:k=0", "knn:metric=manhattan", "mahalanobis:covariance=mcd", "knn:foo=1", "knn:k"]:
        with pytest.raises(AnomalyModelError):
            ScorerConfig.parse(bad)
    with pytest.raises(AnomalyModelError, match="not fitted"):
        make_scorer("knn").anomaly_score(Q)
    s = make_scorer("mahalanobis").fit(X)
    with pytest.raises(AnomalyModelError, match="dim"):
        s.anomaly_score(Q[:, :5])
    with pytest.raises(AnomalyModelError, match="at least 2"):
        make_scorer("mahalanobis").fit(X[:1])
    with pytest.raises(AnomalyModelError, match="NaN"):
        s.anomaly_score(np.full((1, X.shape[1]), np.nan))


def test_load_rejects_missing_or_foreign_dirs(tmp_path, data):
    with pytest.raises(AnomalyModelError, match="fit it again"):
        load_scorer(tmp_path / "nothing")
    X, _ = data
    make_scorer("knn").fit(X).save(tmp_path / "m")
    (tmp_path / "m" / "scorer.json").write_text('{"format": 99, "kind": "knn"}')
    with pytest.raises(AnomalyModelError, match="unsupported"):
        load_scorer(tmp_path / "m")

"""Anomaly scorers fitted on normal embeddings only (numpy, scikit-learn and FAISS).

Three scorers, scikit-learn style (``fit``, ``score_samples``, ``decision_function``,
``predict``) plus :meth:`AnomalyScorer.anomaly_score`, where **higher means more anomalous**:

* ``mahalanobis`` -- the **squared** Mahalanobis distance ``(x - mu)^T P (x - mu)`` to the
  location ``mu`` and precision ``P`` of the normal vectors (the quantity scikit-learn's
  ``EmpiricalCovariance.mahalanobis`` returns). ``covariance`` picks the estimator:
  ``empirical`` (pseudo-inverse of the sample covariance, as scikit-learn does), ``ledoitwolf``
  or ``oas`` (shrunk towards a scaled identity, so well-posed when dim > n_samples).
* ``knn`` -- mean (``reduce="mean"``) or k-th (``reduce="kth"``) distance to the ``k`` nearest
  normal vectors through an exact FAISS index; ``metric="cosine"`` uses ``1 - cosine similarity``,
  ``metric="euclidean"`` the Euclidean distance. A training vector's own score leaves itself out.
* ``lof`` -- scikit-learn's ``LocalOutlierFactor(novelty=True)``; the score is the local outlier
  factor (about 1 for inliers), training scores are the training samples' own LOFs.

Optional label-free preprocessing, fitted on the normal vectors and applied before any scorer:
``l2`` (L2-normalise each vector) then ``pca`` (project on the first ``pca`` principal components).

Training scores (``train_scores_``) are held out, so that they look like the scores of new
normal clips: kNN leaves each vector itself out of its neighbours, LOF uses scikit-learn's
training LOFs (computed without the point itself), and Mahalanobis cross-fits (10 folds, or
leave-one-out below 10 vectors: each vector is scored by a model fitted without its fold; the
optional PCA is fitted once on all vectors). In-sample Mahalanobis distances would be far too
small when dim approaches n (they all equal n - 1 for the empirical estimator once dim >= n).
The decision threshold is the ``percentile`` (default 99) of these normal training scores;
``predict`` returns -1 (anomalous) where ``anomaly_score > threshold_`` and +1 otherwise, and
``decision_function = threshold_ - anomaly_score`` (negative = anomalous), as in scikit-learn's
outlier detectors. ``score_samples = -anomaly_score`` (higher = more normal).

A fitted scorer saves to a directory as ``scorer.json`` (configuration, threshold, fitted
scalars) plus ``scorer.npz`` (arrays; read back with ``allow_pickle=False``) and loads back to
identical scores: Mahalanobis keeps its location and low-rank precision, kNN rebuilds its FAISS index
from the stored normal vectors, LOF refits on the stored normal vectors with the same parameters
(brute-force neighbours, so the refit is exact).

**Fits that cannot lie.** ``fit`` refuses (:class:`AnomalyModelError`, naming the fix) training sets
that would give a model whose verdicts mean nothing:

* fewer than :data:`MIN_TRAIN` = 3 vectors (4 for ``mahalanobis``): with 2, held-out training
  scores and hence the threshold are not defined (the old fit used in-sample scores that tie the
  threshold, so the training clips themselves came out anomalous); Mahalanobis cross-fits on
  ``n - 1`` vectors below 10, and Ledoit-Wolf does not shrink at all on 2, which put the threshold
  near 0 for 3 vectors;
* vectors that are all identical after preprocessing (up to float32 rounding): there is no
  spread to measure distances against, so every verdict is an artefact of rounding;
* ``mahalanobis`` with ``covariance=empirical`` on vectors that do not span their dimension
  (fewer vectors than dimensions, or constant directions): the pseudo-inverse gives zero weight to
  every direction the training vectors do not vary in, so unrelated sounds that differ only there
  score 0, "normal". The shrunk estimators (``ledoitwolf``, ``oas``) are defined for such data;
* a fit whose scores or threshold come out non-finite.

Fits that are usable but weaker than asked carry a :class:`DegenerateFitWarning` (issued with
``warnings.warn`` and kept in ``warnings_``): ``k`` lowered to the number of other training vectors,
or training scores that are all equal (duplicated vectors), so that any vector unlike a training
vector is anomalous.

**Saved models are checked on load.** ``scorer.json`` records the sha256 of ``scorer.npz`` and of
its own content (format 2); :func:`load_scorer` verifies both, then every field's type, shape and
finiteness, so a truncated, garbled, hand-edited or foreign model gives :class:`AnomalyModelError`
naming the file and the fix, never a traceback or a ``nan`` verdict. Format-1 models (no checksums)
still load, with the same field checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from audiosim.errors import AnomalyModelError
from audiosim.files import dumps_strict, write_bytes_atomic, write_json_atomic
from audiosim.indexes.flat import FlatIndex
from audiosim.indexes.vectors import METRICS, l2_normalize

SCORERS = ("mahalanobis", "knn", "lof")
COVARIANCES = ("empirical", "ledoitwolf", "oas")
REDUCTIONS = ("mean", "kth")
CV_FOLDS = 10  # Mahalanobis training scores: 10-fold cross-fitting (leave-one-out below 10 vectors)
MIN_TRAIN = 3
IDENTICAL_RTOL = 1e-6  # spread below this fraction of the vectors' magnitude is float32 rounding
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CONFIG_FILE = "scorer.json"
ARRAYS_FILE = "scorer.npz"
FIT_AGAIN = "fit it again (`audiosim anomaly fit`)"


class DegenerateFitWarning(UserWarning):
    """An anomaly model was fitted, but on data that makes it weaker than its configuration asks."""


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise AnomalyModelError(f"expected a boolean (true/false), got {text!r}")


@dataclass(frozen=True)
class ScorerConfig:
    """What to fit. Parse a compact spec with :meth:`parse`, e.g. ``knn:k=5,metric=cosine``."""

    scorer: str = "mahalanobis"
    covariance: str = "ledoitwolf"  # mahalanobis
    k: int = 5  # knn, lof
    metric: str = "cosine"  # knn, lof
    reduce: str = "mean"  # knn
    percentile: float = 99.0
    l2: bool = False
    pca: int | None = None

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise AnomalyModelError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        if self.covariance not in COVARIANCES:
            raise AnomalyModelError(f"unknown covariance {self.covariance!r}; choose one of {', '.join(COVARIANCES)}")
        if self.metric not in METRICS:
            raise AnomalyModelError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.reduce not in REDUCTIONS:
            raise AnomalyModelError(f"unknown reduce {self.reduce!r}; choose one of {', '.join(REDUCTIONS)}")
        if int(self.k) < 1:
            raise AnomalyModelError(f"k must be >= 1, got {self.k}")
        if not 0.0 <= float(self.percentile) <= 100.0:
            raise AnomalyModelError(f"percentile must be within [0, 100], got {self.percentile}")
        if self.pca is not None and int(self.pca) < 1:
            raise AnomalyModelError(f"pca must be >= 1 components, got {self.pca}")

    @classmethod
    def parse(cls, text: str, **overrides) -> ScorerConfig:
        """``name[:key=value,...]``, e.g. ``mahalanobis:covariance=oas,l2=true`` or ``knn:k=3,reduce=kth``."""
        name, _, rest = text.strip().partition(":")
        values: dict = {"scorer": name.strip()}
        known = {f.name for f in fields(cls)} - {"scorer"}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in known:
                raise AnomalyModelError(f"bad scorer option {item!r} in {text!r}; options are key=value with key in "
                                       f"{', '.join(sorted(known))}")
            values[key] = value.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, d: dict) -> ScorerConfig:
        if not isinstance(d, dict):
            raise AnomalyModelError(f"a scorer configuration must be a mapping of options, got {type(d).__name__}")
        v = dict(d)
        for key in ("scorer", "covariance", "metric", "reduce"):
            if key in v and not isinstance(v[key], str):
                raise AnomalyModelError(f"scorer option {key} must be text, got {v[key]!r}")
        for key in ("k", "percentile", "pca"):
            if isinstance(v.get(key), (bool, list, dict)):
                raise AnomalyModelError(f"scorer option {key} must be a number, got {v[key]!r}")
        if "l2" in v and not isinstance(v["l2"], (bool, str)):
            raise AnomalyModelError(f"scorer option l2 must be true or false, got {v['l2']!r}")
        try:
            if "k" in v:
                v["k"] = int(v["k"])
            if "percentile" in v:
                v["percentile"] = float(v["percentile"])
            if "l2" in v and isinstance(v["l2"], str):
                v["l2"] = _bool(v["l2"])
            if v.get("pca") in ("", "none", "None"):
                v["pca"] = None
            if v.get("pca") is not None:
                v["pca"] = int(v["pca"])
            if "percentile" in v and not math.isfinite(v["percentile"]):
                raise ValueError(f"percentile must be finite, got {v['percentile']}")
        except (ValueError, TypeError, OverflowError) as e:
            raise AnomalyModelError(f"bad scorer option value in {d}: {e}") from None
        unknown = set(v) - {f.name for f in fields(cls)}
        if unknown:
            raise AnomalyModelError(f"unknown scorer options {sorted(unknown)}")
        return cls(**v)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def spec(self) -> str:
        """A canonical short name naming only the options this scorer uses (round-trips through :meth:`parse`)."""
        opts = []
        if self.scorer == "mahalanobis":
            opts.append(f"covariance={self.covariance}")
        else:
            opts += [f"k={self.k}", f"metric={self.metric}"]
            if self.scorer == "knn":
                opts.append(f"reduce={self.reduce}")
        if self.l2:
            opts.append("l2=true")
        if self.pca is not None:
            opts.append(f"pca={self.pca}")
        return f"{self.scorer}:{','.join(opts)}"


def _as_matrix(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if a.ndim != 2:
        raise AnomalyModelError(f"expected vectors shaped [n, dim], got {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise AnomalyModelError(f"vectors have dim {a.shape[1]}, the anomaly model was fitted on dim {dim}")
    if not np.isfinite(a).all():
        raise AnomalyModelError("vectors contain NaN or infinite values")
    return a


class AnomalyScorer:
    """Base class: preprocessing, threshold, scikit-learn outlier API, save/load."""

    kind = ""
    min_train = MIN_TRAIN

    def __init__(self, config: ScorerConfig) -> None:
        if config.scorer != self.kind:
            raise AnomalyModelError(f"{type(self).__name__} needs scorer={self.kind!r}, got {config.scorer!r}")
        self.config = config
        self.dim_: int | None = None
        self.n_train_: int = 0
        self.threshold_: float | None = None
        self.train_scores_: np.ndarray | None = None
        self.warnings_: tuple[str, ...] = ()
        self._pca_mean: np.ndarray | None = None
        self._pca_components: np.ndarray | None = None

    # ------------------------------------------------------------------ public API
    def fit(self, X: np.ndarray) -> AnomalyScorer:
        """Fit on normal vectors ``X`` [n, dim]; refuses degenerate training sets (see the module docstring)."""
        x = _as_matrix(X)
        n = x.shape[0]
        if n < self.min_train:
            raise AnomalyModelError(
                f"a {self.kind} anomaly model needs at least {self.min_train} normal vectors (its threshold comes "
                f"from held-out scores of the training vectors), got {n}; fit on more normal recordings, or on "
                "segments of them (index with --segment)"
            )
        self.warnings_ = ()
        self.dim_, self.n_train_ = int(x.shape[1]), int(n)
        self._fit_preprocess(x)
        z = self._preprocess(x)
        spread = float(np.ptp(z, axis=0).max())
        if spread <= IDENTICAL_RTOL * max(float(np.abs(z).max()), np.finfo(np.float64).tiny):
            where = " after l2 normalisation" if self.config.l2 else ""
            raise AnomalyModelError(
                f"all {n} training vectors are identical{where}: there is no variation to measure "
                "anomalies against; fit on several different normal recordings"
            )
        self._fit(z)
        self._check_fit(z)
        self.train_scores_ = np.asarray(self._train_scores(z), dtype=np.float64)
        self.threshold_ = float(np.percentile(self.train_scores_, self.config.percentile))
        if not (np.isfinite(self.train_scores_).all() and math.isfinite(self.threshold_)):
            self.threshold_ = None
            raise AnomalyModelError(
                f"fitting {self.config.spec} on {n} vectors gave non-finite scores (degenerate data); "
                "use covariance=ledoitwolf, l2=true or pca=K"
            )
        if np.ptp(self.train_scores_) == 0:
            self._warn(f"all {n} training scores equal {self.threshold_:.6g} (duplicated vectors?): any vector "
                       "unlike a training vector will be called anomalous")
        return self

    def _warn(self, message: str, *, stacklevel: int = 3) -> None:
        """Record ``message`` in ``warnings_`` and issue it (``stacklevel`` points at the caller of ``fit``)."""
        self.warnings_ = (*self.warnings_, message)
        warnings.warn(f"{self.config.spec}: {message}", DegenerateFitWarning, stacklevel=stacklevel)

    def anomaly_score(self, X: np.ndarray) -> np.ndarray:
        """Higher = more anomalous; float64 [n]."""
        self._check_fitted()
        return np.asarray(self._score(self._preprocess(_as_matrix(X, self.dim_))), dtype=np.float64)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn convention: higher = more normal (``-anomaly_score``)."""
        return -self.anomaly_score(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``threshold_ - anomaly_score``: negative for anomalies, positive for inliers."""
        scores = self.anomaly_score(X)
        return self.threshold_ - scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """-1 for anomalies (score above the threshold), +1 for inliers."""
        return np.where(self.anomaly_score(X) > self.threshold_, -1, 1)

    @property
    def offset_(self) -> float:
        """scikit-learn's ``decision_function = score_samples - offset_``."""
        self._check_fitted()
        return -float(self.threshold_)

    def set_percentile(self, percentile: float) -> None:
        """Move the threshold to another percentile of the stored training scores."""
        self._check_fitted()
        self.config = replace(self.config, percentile=float(percentile))
        self.threshold_ = float(np.percentile(self.train_scores_, self.config.percentile))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, *, extra: dict | None = None) -> Path:
        """Write ``scorer.json`` and ``scorer.npz`` atomically into ``directory``."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"train_scores": self.train_scores_}
        if self._pca_mean is not None:
            arrays.update(pca_mean=self._pca_mean, pca_components=self._pca_components)
        arrays.update(self._arrays())
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        write_bytes_atomic(d / ARRAYS_FILE, data)
        meta = {"format": FORMAT_VERSION, "kind": self.kind, "config": self.config.to_dict(), "spec": self.config.spec,
                "dim": self.dim_, "n_train": self.n_train_, "threshold": self.threshold_, "fitted": self._scalars(),
                "extra": extra or {}, "arrays_sha256": hashlib.sha256(data).hexdigest()}
        meta = json.loads(dumps_strict(meta, indent=None))  # exactly what a reader will see
        meta["meta_sha256"] = meta_digest(meta)
        write_json_atomic(d / CONFIG_FILE, meta)
        return d

    @staticmethod
    def load(directory: str | Path) -> AnomalyScorer:
        """Rebuild a scorer saved by :meth:`save` (see :func:`load_scorer` for the sidecar too)."""
        return load_scorer(directory)[0]

    # ------------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise AnomalyModelError(f"the {self.kind} scorer is not fitted; call fit(X) with normal vectors first")

    def _fit_preprocess(self, x: np.ndarray) -> None:
        self._pca_mean = self._pca_components = None
        if self.config.pca is None:
            return
        from sklearn.decomposition import PCA

        z = _l2(x) if self.config.l2 else x
        want = int(self.config.pca)
        if want > z.shape[1]:
            raise AnomalyModelError(f"pca={want} asks for more principal components than the vectors' {z.shape[1]} "
                                    f"dimensions; give pca={z.shape[1]} or fewer (or leave pca out)")
        n_comp = min(want, z.shape[0])
        if n_comp < want:
            self._warn(f"pca={want} lowered to {n_comp}: {z.shape[0]} training vectors span at most {n_comp} "
                       "principal components", stacklevel=4)
        pca = PCA(n_components=n_comp, svd_solver="full").fit(z)
        self._pca_mean = pca.mean_.astype(np.float64)
        self._pca_components = pca.components_.astype(np.float64)

    def _preprocess(self, x: np.ndarray) -> np.ndarray:
        z = _l2(x) if self.config.l2 else x
        if self._pca_components is not None:
            z = (z - self._pca_mean) @ self._pca_components.T
        return z

    def _restore(self, meta: dict, arrays: dict) -> None:
        self.dim_, self.n_train_ = int(meta["dim"]), int(meta["n_train"])
        self.threshold_ = float(meta["threshold"])
        self.train_scores_ = arrays["train_scores"]
        if "pca_mean" in arrays:
            self._pca_mean, self._pca_components = arrays["pca_mean"], arrays["pca_components"]

    def _fit(self, z: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fit(self, z: np.ndarray) -> None:
        """Refuse or warn about a fitted model that its data made degenerate (after ``_fit`` on all vectors)."""
        k_ = getattr(self, "k_", None)
        if k_ is not None and k_ < int(self.config.k):
            self._warn(f"k={self.config.k} lowered to {k_}: only {z.shape[0]} training vectors", stacklevel=4)

    def _score(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _train_scores(self, z: np.ndarray) -> np.ndarray:
        return self._score(z)

    def _arrays(self) -> dict:
        return {}

    def _scalars(self) -> dict:
        return {}


def _l2(x: np.ndarray) -> np.ndarray:
    return l2_normalize(x, dtype=np.float64)


def shrinkage(covariance: str, *, n_samples: int, n_features: int, row_sq_norms: np.ndarray, gram_fro2: float) -> float:
    """scikit-learn's Ledoit-Wolf / OAS shrinkage intensity from O(n) sufficient statistics of centred data.

    ``row_sq_norms`` are the rows' squared norms and ``gram_fro2`` the squared Frobenius norm of
    ``X^T X`` (equal to that of the Gram matrix ``X X^T``), so no dim x dim matrix is needed. The
    formulas are those of ``sklearn.covariance.ledoit_wolf_shrinkage`` and ``sklearn.covariance.OAS``
    (scikit-learn >= 1.3); the tests check them against scikit-learn.
    """
    if covariance == "empirical" or n_features == 1:
        return 0.0
    n, p = float(n_samples), float(n_features)
    trace = float(row_sq_norms.sum()) / n  # trace of the biased sample covariance S
    mu = trace / p
    s_fro2 = gram_fro2 / n ** 2  # ||S||_F^2
    if covariance == "ledoitwolf":
        beta = (float(np.sum(row_sq_norms ** 2)) / n - s_fro2) / (p * n)
        delta = (s_fro2 - 2.0 * mu * trace + p * mu ** 2) / p
        beta = min(beta, delta)
        return 0.0 if beta == 0 else float(beta / delta)
    if covariance == "oas":
        alpha = s_fro2 / p ** 2
        num = alpha + mu ** 2
        den = (n + 1) * (alpha - mu ** 2 / p)
        return 1.0 if den == 0 else float(min(num / den, 1.0))
    raise AnomalyModelError(f"unknown covariance {covariance!r}; choose one of {', '.join(COVARIANCES)}")


class MahalanobisScorer(AnomalyScorer):
    """Squared Mahalanobis distance to the normal vectors' location (see the module docstring).

    The precision is kept in low-rank form ``P = iso * I + B^T diag(w) B`` (``B``: the sample
    covariance's eigenvectors, at most min(n, dim) of them), which is exactly the pseudo-inverse of
    the (shrunk) covariance scikit-learn estimates, without forming or inverting a dim x dim matrix
    when dim exceeds the sample count; the shrinkage intensity follows scikit-learn (:func:`shrinkage`).
    """

    kind = "mahalanobis"
    min_train = MIN_TRAIN + 1  # held-out sub-models see n - 1 vectors; Ledoit-Wolf needs 3 to shrink at all

    def _fit(self, z: np.ndarray) -> None:
        n, dim = z.shape
        self.location_ = z.mean(axis=0)
        xc = z - self.location_
        # Eigen-decomposition of the biased sample covariance xc^T xc / n (through the n x n Gram matrix when n < dim).
        if n < dim:
            gram = xc @ xc.T
            lam, u = np.linalg.eigh(gram / n)
            lam = np.maximum(lam, 0.0)
            basis = (xc.T @ u / np.sqrt(np.maximum(lam * n, 1e-300))).T
        else:
            gram = xc.T @ xc
            lam, v = np.linalg.eigh(gram / n)
            lam = np.maximum(lam, 0.0)
            basis = v.T
        sq = np.einsum("ij,ij->i", xc, xc)
        alpha = shrinkage(self.config.covariance, n_samples=n, n_features=dim, row_sq_norms=sq,
                          gram_fro2=float(np.sum(gram * gram)))
        mu = float(sq.sum()) / (n * dim)  # trace / dim: the shrinkage target's scale
        eig = (1.0 - alpha) * lam + alpha * mu  # covariance eigenvalues along ``basis``
        null_eig = alpha * mu if n < dim else 0.0  # eigenvalue on the complement of ``basis`` (if any)
        cutoff = max(n, dim) * np.finfo(np.float64).eps * max(float(eig.max(initial=0.0)), null_eig)
        iso = 1.0 / null_eig if null_eig > cutoff else 0.0
        keep = lam > cutoff if n < dim else eig > cutoff  # Gram directions with ~0 variance are not real ones
        self.shrinkage_ = alpha
        self.iso_ = iso
        self.basis_ = np.ascontiguousarray(basis[keep])
        self.weights_ = 1.0 / eig[keep] - iso

    def _score(self, z: np.ndarray) -> np.ndarray:
        d = z - self.location_
        proj = d @ self.basis_.T
        return np.maximum(self.iso_ * np.einsum("ij,ij->i", d, d) + (proj * proj) @ self.weights_, 0.0)

    @property
    def precision_(self) -> np.ndarray:
        """The dense dim x dim precision matrix (for inspection; scoring uses the low-rank form)."""
        return self.iso_ * np.eye(self.location_.size) + (self.basis_.T * self.weights_) @ self.basis_

    def _train_scores(self, z: np.ndarray) -> np.ndarray:
        # Held-out scores: each vector scored by a model fitted without its fold (in-sample squared
        # distances shrink towards n - 1 when dim >= n and would put the threshold far too low).
        n = z.shape[0]
        if n < 3:
            return self._score(z)
        n_folds = min(n, CV_FOLDS)
        fold = np.arange(n) % n_folds
        out = np.empty(n)
        for f in range(n_folds):
            held = fold == f
            sub = MahalanobisScorer(self.config)
            sub._fit(z[~held])
            out[held] = sub._score(z[held])
        return out

    def _check_fit(self, z: np.ndarray) -> None:
        rank, dim = int(self.basis_.shape[0]), int(z.shape[1])
        if self.config.covariance == "empirical" and rank < dim:
            raise AnomalyModelError(
                f"the {z.shape[0]} training vectors span only {rank} of their {dim} dimensions, so the empirical "
                f"covariance would score every deviation in the other {dim - rank} as 0 (normal); use "
                f"covariance=ledoitwolf or covariance=oas (shrunk, defined for such data), or pca={max(rank, 1)} "
                "with more vectors than components"
            )

    def _arrays(self) -> dict:
        return {"location": self.location_, "basis": self.basis_, "weights": self.weights_}

    def _scalars(self) -> dict:
        return {"shrinkage": self.shrinkage_, "iso": self.iso_, "rank": int(self.basis_.shape[0])}

    def _restore(self, meta: dict, arrays: dict) -> None:
        super()._restore(meta, arrays)
        self.location_, self.basis_, self.weights_ = arrays["location"], arrays["basis"], arrays["weights"]
        self.shrinkage_, self.iso_ = float(meta["fitted"]["shrinkage"]), float(meta["fitted"]["iso"])


class _NeighbourScorer(AnomalyScorer):
    """A scorer whose fitted state is its training vectors (``train_``) and ``k_``; loading refits on them."""

    def _arrays(self) -> dict:
        return {"train": self.train_}

    def _scalars(self) -> dict:
        return {"k": self.k_}

    def _restore(self, meta: dict, arrays: dict) -> None:
        super()._restore(meta, arrays)
        self._fit(arrays["train"])


class KnnScorer(_NeighbourScorer):
    """Mean or k-th distance to the k nearest normal vectors (exact FAISS search)."""

    kind = "knn"

    def _fit(self, z: np.ndarray) -> None:
        self.train_ = np.ascontiguousarray(z, dtype=np.float32)
        self.k_ = min(int(self.config.k), self.train_.shape[0] - 1)  # same k for training (self left out) and queries
        self._index = FlatIndex(dim=self.train_.shape[1], metric=self.config.metric)
        self._index.add(np.arange(self.train_.shape[0], dtype=np.int64), self.train_)

    def _distances(self, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = self._index.search(np.asarray(z, dtype=np.float32), k)
        s = res.scores.astype(np.float64)
        return (1.0 - s if self.config.metric == "cosine" else s), res.ids

    def _reduce(self, dist: np.ndarray) -> np.ndarray:
        return dist.mean(axis=1) if self.config.reduce == "mean" else dist[:, self.k_ - 1]

    def _score(self, z: np.ndarray) -> np.ndarray:
        return self._reduce(self._distances(z, self.k_)[0])

    def _train_scores(self, z: np.ndarray) -> np.ndarray:
        dist, ids = self._distances(z, self.k_ + 1)
        n = dist.shape[0]
        keep = np.ones_like(dist, dtype=bool)
        own = ids == np.arange(n)[:, None]
        # Drop the vector's own entry; where a duplicate pushed it out of the list, drop the farthest.
        keep[own] = False
        keep[~own.any(axis=1), -1] = False
        return self._reduce(dist[keep].reshape(n, self.k_))


class LofScorer(_NeighbourScorer):
    """scikit-learn ``LocalOutlierFactor(novelty=True)``; the score is the local outlier factor."""

    kind = "lof"

    def _fit(self, z: np.ndarray) -> None:
        from sklearn.neighbors import LocalOutlierFactor

        self.train_ = np.asarray(z, dtype=np.float64)
        self.k_ = min(int(self.config.k), self.train_.shape[0] - 1)
        self._lof = LocalOutlierFactor(n_neighbors=self.k_, novelty=True, metric=self.config.metric,
                                       algorithm="brute").fit(self.train_)

    def _score(self, z: np.ndarray) -> np.ndarray:
        return -self._lof.score_samples(z)

    def _train_scores(self, z: np.ndarray) -> np.ndarray:
        return -self._lof.negative_outlier_factor_


SCORER_CLASSES = {"mahalanobis": MahalanobisScorer, "knn": KnnScorer, "lof": LofScorer}


def make_scorer(config: ScorerConfig | str | None = None, **options) -> AnomalyScorer:
    """An unfitted scorer from a :class:`ScorerConfig`, a spec string (``knn:k=3``) or keyword options."""
    if isinstance(config, str):
        config = ScorerConfig.parse(config, **options)
    elif config is None:
        config = ScorerConfig(**options)
    elif options:
        config = replace(config, **options)
    return SCORER_CLASSES[config.scorer](config)


def meta_digest(meta: dict) -> str:
    """sha256 of a model's ``scorer.json`` content without its ``meta_sha256`` field (canonical compact JSON)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(dumps_strict(body, indent=None, sort_keys=True).encode()).hexdigest()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_model(d: Path) -> tuple[dict, dict, bytes]:
    """(meta, arrays, raw npz bytes), or AnomalyModelError for anything unreadable."""
    try:
        meta_bytes = (d / CONFIG_FILE).read_bytes()
        npz_bytes = (d / ARRAYS_FILE).read_bytes()
    except OSError as e:
        raise AnomalyModelError(f"cannot read the anomaly model in {d}: {e.strerror or e}; {FIT_AGAIN}") from e
    try:
        meta = json.loads(meta_bytes.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise AnomalyModelError(f"{d / CONFIG_FILE} is not valid JSON ({e}); the anomaly model is damaged: "
                                f"{FIT_AGAIN}") from None
    if not isinstance(meta, dict):
        raise AnomalyModelError(f"{d / CONFIG_FILE} holds a JSON {type(meta).__name__}, not an anomaly model; {FIT_AGAIN}")
    try:
        npz = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, KeyError, IndexError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, OverflowError, MemoryError, AttributeError, TypeError) as e:
        raise AnomalyModelError(f"{d / ARRAYS_FILE} is not a readable array archive ({type(e).__name__}: {e}); "
                                f"the anomaly model is damaged: {FIT_AGAIN}") from None
    return meta, arrays, npz_bytes


def _check_model(d: Path, meta: dict, arrays: dict, npz_bytes: bytes) -> ScorerConfig:
    """Validate a saved model's checksums, fields, shapes and values; return its configuration."""
    def bad(what: str):
        raise AnomalyModelError(f"{d}: {what}; the anomaly model is damaged or was not written by audiosim: {FIT_AGAIN}")

    fmt = meta.get("format")
    kind = meta.get("kind")
    if not _is_int(fmt) or fmt not in READABLE_FORMATS or not isinstance(kind, str) or kind not in SCORER_CLASSES:
        raise AnomalyModelError(f"{d / CONFIG_FILE}: unsupported anomaly model (format {fmt!r}, kind "
                                f"{meta.get('kind')!r}); {FIT_AGAIN}")
    if fmt >= 2:
        if meta.get("meta_sha256") != meta_digest(meta):
            bad(f"{CONFIG_FILE} does not match its recorded checksum (edited or corrupted)")
        if meta.get("arrays_sha256") != hashlib.sha256(npz_bytes).hexdigest():
            bad(f"{ARRAYS_FILE} does not match the checksum recorded in {CONFIG_FILE} (corrupted, or from another fit)")
    missing = [k for k in ("config", "dim", "n_train", "threshold", "fitted") if k not in meta]
    if missing:
        bad(f"{CONFIG_FILE} lacks {', '.join(missing)}")
    try:
        config = ScorerConfig.from_dict(meta["config"])
    except AnomalyModelError as e:
        bad(f"its configuration is invalid ({e})")
    if config.scorer != meta["kind"]:
        bad(f"kind {meta['kind']!r} but configuration for {config.scorer!r}")
    dim, n, threshold, fitted = meta["dim"], meta["n_train"], meta["threshold"], meta["fitted"]
    if not (_is_int(dim) and dim >= 1):
        bad(f"dim must be a positive integer, got {dim!r}")
    least = SCORER_CLASSES[meta["kind"]].min_train if fmt >= 2 else 2
    if not (_is_int(n) and n >= least):
        bad(f"n_train must be an integer >= {least}, got {n!r}")
    if not _is_number(threshold):
        bad(f"threshold must be a finite number, got {threshold!r}")
    if not isinstance(fitted, dict) or not isinstance(meta.get("extra", {}), dict):
        bad("fitted and extra must be JSON objects")
    for name, a in arrays.items():
        if a.dtype.kind not in "fiu":
            bad(f"array {name} has dtype {a.dtype}, expected numbers")
        if not np.isfinite(a).all():
            bad(f"array {name} holds NaN or infinite values")

    def shape(name: str, *want):
        if name not in arrays:
            bad(f"{ARRAYS_FILE} lacks the array {name}")
        got = arrays[name].shape
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            bad(f"array {name} has shape {got}, expected {tuple('?' if w is None else w for w in want)}")
        return got

    shape("train_scores", n)
    zdim = dim
    if config.pca is None:
        if "pca_mean" in arrays or "pca_components" in arrays:
            bad("PCA arrays present but the configuration has no pca")
    else:
        shape("pca_mean", dim)
        zdim = shape("pca_components", None, dim)[0]
        if not 1 <= zdim <= min(int(config.pca), n, dim):
            bad(f"{zdim} PCA components for pca={config.pca}, {n} vectors of dim {dim}")
    if meta["kind"] == "mahalanobis":
        shape("location", zdim)
        rank = shape("basis", None, zdim)[0]
        shape("weights", rank)
        shrink, iso = fitted.get("shrinkage"), fitted.get("iso")
        if not (_is_number(shrink) and 0.0 <= shrink <= 1.0) or not (_is_number(iso) and iso >= 0.0):
            bad(f"fitted shrinkage/iso must be finite numbers (shrinkage in [0, 1], iso >= 0), got {shrink!r}, {iso!r}")
        if rank == 0 and iso == 0.0:
            bad("its precision is zero: every vector would score 0")
    else:
        shape("train", n, zdim)
        k = fitted.get("k")
        if not (_is_int(k) and 1 <= k <= n - 1):
            bad(f"fitted k must be an integer in 1..{n - 1}, got {k!r}")
    return config


def load_scorer(directory: str | Path) -> tuple[AnomalyScorer, dict]:
    """(scorer, its ``scorer.json`` content) from a directory written by :meth:`AnomalyScorer.save`.

    Every unreadable, garbled, inconsistent or non-finite model gives :class:`AnomalyModelError`.
    """
    d = Path(directory)
    meta, arrays, npz_bytes = _read_model(d)
    config = _check_model(d, meta, arrays, npz_bytes)
    scorer = SCORER_CLASSES[meta["kind"]](config)
    try:
        scorer._restore(meta, arrays)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise AnomalyModelError(f"{d}: the anomaly model cannot be rebuilt ({e}); {FIT_AGAIN}") from None
    return scorer, meta

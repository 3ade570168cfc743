"""Linear probes: how linearly separable the classes are in an embedding (scikit-learn).

Logistic regression and a linear SVM, each behind a ``StandardScaler`` fitted on the training
folds only, evaluated on the official ESC-50 folds: train on four, test on the fifth, five
times. Hyper-parameters are fixed (no tuning on the test folds): ``LogisticRegression(C=1)``
and ``LinearSVC(C=0.01)``. Reported: per-fold accuracy, mean and sample standard deviation.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

PROBES = ("logreg", "svm")


def _model(name: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if name == "logreg":
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    elif name == "svm":
        clf = LinearSVC(C=0.01, max_iter=10000, random_state=seed)
    else:
        raise ValueError(f"probe must be one of {PROBES}, got {name!r}")
    return make_pipeline(StandardScaler(), clf)


def linear_probe(X: np.ndarray, y: np.ndarray, folds: np.ndarray, *, model: str = "logreg", seed: int = 0) -> dict:
    """Cross-fold accuracy of one linear probe: ``{"fold_accuracy": [...], "mean", "std", "converged"}``."""
    from sklearn.exceptions import ConvergenceWarning


    X = np.asarray(X, dtype=np.float64)
    y, folds = np.asarray(y), np.asarray(folds)
    accs, converged = [], True
    for k in np.unique(folds):
        test = folds == k
        clf = _model(model, seed)
        # one BLAS thread: the solvers alternate numpy's and scipy's OpenBLAS on small matrices, and two
        # spinning thread pools oversubscribe small machines (measured on 2 cores: 0.8 s vs 24 s a fit)
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X[~test], y[~test])
        converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        accs.append(float((clf.predict(X[test]) == y[test]).mean()))
    a = np.array(accs)
    return {"fold_accuracy": accs, "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "converged": bool(converged)}


def run_probes(X: np.ndarray, labels: Mapping[str, np.ndarray], folds: np.ndarray, *,
               models: Sequence[str] = PROBES, seed: int = 0) -> dict:
    """``{level: {model: linear_probe(...)}}`` for every label level and probe."""
    return {lvl: {m: linear_probe(X, y, folds, model=m, seed=seed) for m in models} for lvl, y in labels.items()}

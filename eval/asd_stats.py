"""Statistics for anomalous sound detection: AUC, DCASE pAUC, DeLong tests, Holm, bootstrap, official scores.

numpy and scipy only. ``y`` is 1 for anomalous clips, 0 for normal ones; higher scores = more anomalous.

* AUC -- the Mann-Whitney statistic (ties count one half).
* pAUC -- the DCASE Task 2 definition: the area under the ROC curve over FPR in [0, p], divided by p
  (p = ``max_fpr`` = 0.1; 1 for a perfect detector, p/2 for chance). (scikit-learn's ``max_fpr`` gives the
  McClish-standardised value instead; the legacy ``anomaly eval --scorer`` reports that one.)
* DeLong -- the variance of AUC differences of detectors scored on the same clips (DeLong, DeLong and
  Clarke-Pearson 1988, structural components V10/V01), two-sided z test.
* Official scores (:func:`official_score`):
  2020: the arithmetic means of AUC and pAUC over machine types and IDs (the challenge ranked systems by
  these per machine type); ``score`` = their average.
  2021: harmonic mean over machine type, section and domain of AUC_{m,n,d} and pAUC_{m,n,d}, both on the
  normal and anomalous test clips of domain d.
  2022-2024: harmonic mean of AUC_{m,n,d} (normal clips of domain d, anomalous clips of both domains of the
  section) over m, n, d and pAUC_{m,n} (all clips of the section) over m, n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from audiosim.errors import MetricsError

MAX_FPR = 0.1


def check_labels_scores(y, s) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 normal, 1 anomalous) and finite scores of one shape, both classes present; else MetricsError."""
    y = np.asarray(y).astype(int).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise MetricsError(f"{y.size} labels for {s.size} scores")
    if not np.isfinite(s).all():
        raise MetricsError("anomaly scores contain NaN or infinite values")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise MetricsError(f"AUC needs both normal and anomalous clips (got {y.size - n_pos} normal, {n_pos} anomalous)")
    return y, s


def roc_points(y, s) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1)."""
    y, s = check_labels_scores(y, s)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last index of each tied block
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def auc(y, s) -> float:
    y, s = check_labels_scores(y, s)
    from scipy.stats import rankdata

    r = rankdata(s)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pauc(y, s, *, max_fpr: float = MAX_FPR) -> float:
    """DCASE pAUC: area under ROC over FPR in [0, max_fpr], divided by max_fpr."""
    fpr, tpr = roc_points(y, s)
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x, t = fpr[:stop], tpr[:stop]
    if x[-1] < max_fpr:  # interpolate the curve at max_fpr (linear, as the ROC between points)
        f0, f1, t0, t1 = fpr[stop - 1], fpr[stop], tpr[stop - 1], tpr[stop]
        t_at = t0 + (t1 - t0) * (max_fpr - f0) / (f1 - f0)
        x, t = np.r_[x, max_fpr], np.r_[t, t_at]
    return float(np.trapezoid(t, x) / max_fpr)


def hmean(values: Sequence[float]) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return float("nan")
    if (v <= 0).any():
        return 0.0
    return float(v.size / np.sum(1.0 / v))


def delong(y, scores: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs [k], covariance [k, k]) of k detectors' scores on the same clips (DeLong's structural components)."""
    y = np.asarray(y).astype(int).ravel()
    S = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    for s in S:
        check_labels_scores(y, s)
    pos, neg = S[:, y == 1], S[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])  # [k, m, n]
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)  # [k, m], [k, n]
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(S), len(S)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(S), len(S)))
    return aucs, s10 / m + s01 / n


def delong_test(y, a, b) -> dict:
    """Two-sided DeLong test of AUC(a) = AUC(b) on the same clips."""
    from scipy.stats import norm

    aucs, cov = delong(y, [a, b])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    if var <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (float("inf") * np.sign(diff), 0.0)
    else:
        z = diff / np.sqrt(var)
        p = float(2 * norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "var": var, "z": float(z), "p": p}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(list(pvalues), dtype=np.float64)
    k = p.size
    order = np.argsort(p)
    adj = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (k - rank) * p[i])
        adj[i] = min(1.0, running)
    return [float(v) for v in adj]


@dataclass(frozen=True)
class TestClip:
    machine: str
    section: str
    domain: str  # "source" or "target" (2020: "source")
    anomalous: bool


def _family(year: int) -> str:
    return "2020" if year == 2020 else ("2021" if year == 2021 else "2022")


def official_score(clips: Sequence[TestClip], scores: Sequence[float], *, year: int, max_fpr: float = MAX_FPR) -> dict:
    """The year's official score and its terms (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.array([c.anomalous for c in clips], dtype=int)
    keys = sorted({(c.machine, c.section) for c in clips})
    fam = _family(year)
    aucs, paucs, terms = [], [], []
    for m, sec in keys:
        in_sec = np.array([(c.machine, c.section) == (m, sec) for c in clips])
        if fam == "2020":
            a, p = auc(y[in_sec], s[in_sec]), pauc(y[in_sec], s[in_sec], max_fpr=max_fpr)
            aucs.append(a), paucs.append(p)
            terms.append({"machine": m, "section": sec, "auc": a, "pauc": p})
            continue
        doms = sorted({c.domain for c, k in zip(clips, in_sec) if k})
        for d in doms:
            dom = np.array([c.domain == d for c in clips])
            sel = in_sec & dom & (y == 0) | (in_sec & (y == 1) & (dom if fam == "2021" else True))
            a = auc(y[sel], s[sel])
            aucs.append(a)
            row = {"machine": m, "section": sec, "domain": d, "auc": a}
            if fam == "2021":
                row["pauc"] = pauc(y[in_sec & dom], s[in_sec & dom], max_fpr=max_fpr)
                paucs.append(row["pauc"])
            terms.append(row)
        if fam == "2022":
            p = pauc(y[in_sec], s[in_sec], max_fpr=max_fpr)
            paucs.append(p)
            terms.append({"machine": m, "section": sec, "domain": "all", "pauc": p})
    if fam == "2020":
        am, pm = float(np.mean(aucs)), float(np.mean(paucs))
        return {"year": year, "score": (am + pm) / 2, "auc_mean": am, "pauc_mean": pm, "terms": terms,
                "definition": "2020: arithmetic means of AUC and pAUC over machine types and IDs; score = their average"}
    return {"year": year, "score": hmean(aucs + paucs), "auc_hmean": hmean(aucs), "pauc_hmean": hmean(paucs),
            "terms": terms, "definition": ("2021: hmean of AUC and pAUC per machine type, section and domain"
                                           if fam == "2021" else "2022-2024: hmean of AUC per machine type, section "
                                           "and domain (anomalies of both domains) and pAUC per section")}


def bootstrap_official(clips: Sequence[TestClip], scores: Sequence[float], *, year: int, n_boot: int = 200,
                       seed: int = 0, level: float = 0.95, max_fpr: float = MAX_FPR) -> dict:
    """Percentile interval of the official score and of the mean AUC, resampling clips within each
    (machine, section, domain, label) cell, so every term keeps both classes."""
    s = np.asarray(scores, dtype=np.float64)
    cells: dict = {}
    for i, c in enumerate(clips):
        cells.setdefault((c.machine, c.section, c.domain, c.anomalous), []).append(i)
    rng = np.random.default_rng(seed)
    vals, means = [], []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(v, size=len(v), replace=True) for v in cells.values()])
        sub = [clips[i] for i in idx]
        o = official_score(sub, s[idx], year=year, max_fpr=max_fpr)
        vals.append(o["score"])
        means.append(float(np.mean([t["auc"] for t in o["terms"] if "auc" in t])))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {"n_boot": n_boot, "level": level,
            "score": [float(np.percentile(vals, lo)), float(np.percentile(vals, hi))],
            "auc_mean": [float(np.percentile(means, lo)), float(np.percentile(means, hi))]}

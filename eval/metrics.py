"""Retrieval and 1-NN classification metrics over an exhaustive ranking (numpy and scikit-learn only).

Protocols (every query ranks a set of candidates, best first):

* ``loo``   -- leave-one-out: each clip queries all the others (the seed thesis's protocol);
* ``xfold`` -- cross-fold: a clip in fold k ranks only the clips of the other folds, so sibling
  takes cut from the same source recording (which share a fold) cannot be retrieved.

Distances: ``cosine`` (cosine similarity) and ``euclidean``. Ties keep the candidates' dataset
order (stable sort). A candidate is *relevant* when it has the query's label; ``R`` is the
number of relevant candidates of a query.

Per-query definitions (``rel_i`` = 1 if the item at rank i is relevant, ``P@i`` = hits in the
top i divided by i):

* ``accuracy``        -- the top-ranked item is relevant (1-NN classification accuracy);
  ``macro_precision``/``macro_recall``/``macro_f1`` are those of the 1-NN predicted labels
  (scikit-learn, classes averaged with equal weight, 0 where a class is never predicted).
* ``acc@K``           -- at least one relevant item in the top K (the thesis's "Accuracy @ K").
* ``p@K``             -- hits in the top K divided by K.
* ``map@K``           -- standard AP@K: ``sum_{i<=K} P@i rel_i / min(K, R)``, averaged over queries.
* ``map_at_k_thesis@K`` -- the thesis's variant: AP of the top-K list normalised by the number
  of relevant items it contains (``sklearn.metrics.average_precision_score`` on the truncated
  list), averaged only over the queries whose top K holds at least one relevant item. It
  ignores the misses, which is why a near-random model can score high.
* ``map@R``           -- ``sum_{i<=R} P@i rel_i / R`` (Musgrave et al.'s MAP@R).
* ``map``             -- full AP over the whole ranking (``sklearn.metrics.average_precision_score``).

Queries without any relevant candidate are left out of the AP-based means. Random baselines
are analytic expectations for a ranking drawn uniformly at random; confidence intervals are
percentile bootstraps over queries with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from audiosim.errors import MetricsError
from audiosim.indexes.vectors import METRICS as DISTANCES, l2_normalize

KS = (1, 2, 3, 4, 5, 10)
PROTOCOLS = ("loo", "xfold")
LEVELS = ("sub", "super")
MAX_THESIS_K = 16  # the thesis baseline enumerates the 2**K hit patterns of a top-K list


# --------------------------------------------------------------------------- ranking
def similarity_matrix(X: np.ndarray, metric: str) -> np.ndarray:
    """[n, n] float64 scores where higher is closer: cosine similarity or minus squared Euclidean distance."""
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2:
        raise MetricsError(f"vectors must be shaped [n, d], got {x.shape}")
    if metric == "cosine":
        x = l2_normalize(x, dtype=np.float64)
        return x @ x.T
    if metric == "euclidean":
        sq = np.einsum("ij,ij->i", x, x)
        return -np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    raise MetricsError(f"distance must be one of {DISTANCES}, got {metric!r}")


def candidate_mask(folds: np.ndarray, protocol: str) -> np.ndarray:
    """[n, n] bool: may query i retrieve item j under ``protocol``."""
    f = np.asarray(folds)
    if protocol == "loo":
        return ~np.eye(f.size, dtype=bool)
    if protocol == "xfold":
        return f[:, None] != f[None, :]
    raise MetricsError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


@dataclass(frozen=True)
class Ranking:
    """``order[q]``: item indices best first (items the protocol excludes come last, after
    ``n_candidates[q]``)."""

    order: np.ndarray
    n_candidates: np.ndarray
    protocol: str = ""
    metric: str = ""


def rank_scores(scores: np.ndarray, allowed: np.ndarray, *, protocol: str = "", metric: str = "") -> Ranking:
    """Rank every row of ``scores`` (higher is closer) over its ``allowed`` items, stably."""
    s = np.where(allowed, -np.asarray(scores, dtype=np.float64), np.inf)
    order = np.argsort(s, axis=1, kind="stable")
    return Ranking(order=order, n_candidates=allowed.sum(axis=1), protocol=protocol, metric=metric)


def rank(X: np.ndarray, *, metric: str, protocol: str, folds: np.ndarray) -> Ranking:
    """Exhaustive ranking of the collection ``X`` against itself under ``protocol``."""
    return rank_scores(similarity_matrix(X, metric), candidate_mask(folds, protocol), protocol=protocol, metric=metric)


def relevance(ranking: Ranking, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rel [Q, N] bool, R [Q]): relevance by rank (False past the candidates) and relevant counts."""
    y = np.asarray(labels)
    n = ranking.order.shape[1]
    valid = np.arange(n)[None, :] < ranking.n_candidates[:, None]
    rel = (y[ranking.order] == y[:, None]) & valid
    return rel, rel.sum(axis=1)


# --------------------------------------------------------------------------- per-query metrics
def per_query_metrics(rel: np.ndarray, n_rel: np.ndarray, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Per-query values (float64, NaN where undefined) from relevance-by-rank.

    Keys: ``correct@1``, ``hit@K``, ``p@K``, ``ap@K`` (standard), ``ap_thesis@K``, ``ap@R``, ``ap``.
    """
    r = np.asarray(rel, dtype=np.float64)
    R = np.asarray(n_rel, dtype=np.float64)
    q, n = r.shape
    if n == 0:
        raise MetricsError("a ranking needs at least one item")
    cum = np.cumsum(r, axis=1)
    gain = np.cumsum(cum / np.arange(1, n + 1) * r, axis=1)  # running sum of P@i * rel_i
    has = R > 0
    out = {"correct@1": r[:, 0].copy()}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in ks:
            if k < 1:
                raise MetricsError(f"K must be >= 1, got {k}")
            kk = min(k, n)
            hits = cum[:, kk - 1]
            out[f"hit@{k}"] = (hits > 0).astype(np.float64)
            out[f"p@{k}"] = hits / k
            out[f"ap@{k}"] = np.where(has, gain[:, kk - 1] / np.minimum(k, R), np.nan)
            out[f"ap_thesis@{k}"] = np.where(hits > 0, gain[:, kk - 1] / hits, np.nan)
        at_r = np.clip(R.astype(np.int64) - 1, 0, n - 1)
        out["ap@R"] = np.where(has, gain[np.arange(q), at_r] / R, np.nan)
        out["ap"] = np.where(has, gain[:, -1] / R, np.nan)
    return out


def summary_name(per_query_key: str) -> str:
    """The reported name of a per-query value's mean (``ap@5`` -> ``map@5``)."""
    if per_query_key == "correct@1":
        return "accuracy"
    if per_query_key.startswith("hit@"):
        return "acc@" + per_query_key[4:]
    if per_query_key.startswith("ap_thesis@"):
        return "map_at_k_thesis@" + per_query_key[10:]
    if per_query_key.startswith("ap"):
        return "m" + per_query_key
    return per_query_key


def means(per_query: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-query value over the queries where it is defined, under its reported name."""
    out = {}
    for key, v in per_query.items():
        v = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v)
        out[summary_name(key)] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


# --------------------------------------------------------------------------- classification
def macro_prf(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 (scikit-learn; classes = those of ``y_true``)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    classes = np.unique(y_true)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "macro_precision": float(p), "macro_recall": float(r),
            "macro_f1": float(f)}


def _onehot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (np.asarray(y)[:, None] == classes[None, :]).astype(np.float64)


def weighted_macro_prf(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Macro precision/recall/F1 for each row of query ``weights`` [B, Q] (bootstrap replicates).

    Row ``b`` equals :func:`macro_prf` on the sample that repeats query ``q`` ``weights[b, q]``
    times; classes are those of ``y_true``, and a class absent from a replicate counts 0.
    """
    classes = np.unique(y_true)
    t, p = _onehot(y_true, classes), _onehot(y_pred, classes)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    tp = w @ (t * p)
    n_true, n_pred = w @ t, w @ p
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(n_pred > 0, tp / n_pred, 0.0)
        rec = np.where(n_true > 0, tp / n_true, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return {"macro_precision": prec.mean(axis=1), "macro_recall": rec.mean(axis=1), "macro_f1": f1.mean(axis=1)}


# --------------------------------------------------------------------------- bootstrap
def bootstrap_weights(n: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, n] float64 multiplicities of each query in each resample (with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each resample's mean of ``values`` [Q] or of each column of [Q, M] (NaNs skipped), for ``weights`` [B, Q]."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(ok, v, 0.0)) / (weights @ ok.astype(np.float64))


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def mean_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement, seeded)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return percentile_ci(bootstrap_means(v, bootstrap_weights(v.size, n_boot=n_boot, seed=seed)), level)


# --------------------------------------------------------------------------- random baselines
def _expected_gain(N: float, R: float, k: int) -> float:
    """E[sum_{i<=k} P@i rel_i] for a uniformly random ranking of N items with R relevant."""
    if N <= 0:
        return 0.0
    i = np.arange(1, k + 1, dtype=np.float64)
    pair = R * (R - 1) / (N * (N - 1)) if N > 1 else 0.0
    return float(np.sum((R / N + (i - 1) * pair) / i))


def _falling(a: float, m: np.ndarray) -> np.ndarray:
    """a (a-1) ... (a-m+1) for each m (vectorised, exact in float64 for small m)."""
    m = np.asarray(m)
    out = np.ones(m.shape, dtype=np.float64)
    for j in range(int(m.max()) if m.size else 0):
        out = np.where(m > j, out * (a - j), out)
    return out


def _thesis_expectation(N: int, R: int, k: int) -> tuple[float, float]:
    """(P(at least one hit in the top k), E[AP of the top k | at least one hit]) for a random ranking."""
    k = min(k, N)
    if k > MAX_THESIS_K:
        raise MetricsError(f"the thesis-MAP baseline enumerates 2**K patterns; K <= {MAX_THESIS_K}")
    pats = ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)
    h = pats.sum(axis=1)
    prob = _falling(R, h) * _falling(N - R, k - h) / _falling(N, np.full(h.shape, k))
    cum = np.cumsum(pats, axis=1)
    ap = np.where(h > 0, (cum / np.arange(1, k + 1) * pats).sum(axis=1) / np.maximum(h, 1), 0.0)
    p_hit = float(prob[h > 0].sum())
    return p_hit, (float((prob * ap)[h > 0].sum() / p_hit) if p_hit > 0 else float("nan"))


def random_baseline(n_candidates: np.ndarray, n_rel: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Analytic expected metric values (reported names) for uniformly random rankings."""
    N = np.asarray(n_candidates, dtype=np.int64)
    R = np.asarray(n_rel, dtype=np.int64)
    pairs, counts = np.unique(np.stack([N, R], axis=1), axis=0, return_counts=True)
    out: dict[str, float] = {}
    Nf, Rf, w = pairs[:, 0].astype(float), pairs[:, 1].astype(float), counts.astype(float)
    has = Rf > 0

    def avg(values: np.ndarray, mask: np.ndarray | None = None) -> float:
        m = np.ones_like(values, dtype=bool) if mask is None else mask
        return float(np.sum(values[m] * w[m]) / np.sum(w[m])) if np.any(m) else float("nan")

    out["accuracy"] = avg(Rf / np.maximum(Nf, 1))
    for k in ks:
        kk = np.minimum(k, Nf)  # a list shorter than K holds all N items
        miss = np.ones_like(Nf)
        for j in range(k):
            miss = np.where(j < kk, miss * np.clip((Nf - Rf - j) / np.maximum(Nf - j, 1), 0, None), miss)
        out[f"acc@{k}"] = avg(1 - miss)
        out[f"p@{k}"] = avg(kk / k * Rf / np.maximum(Nf, 1))
        out[f"map@{k}"] = avg(np.array([_expected_gain(a, b, min(k, int(a))) / max(min(k, b), 1) for a, b in zip(Nf, Rf)]), has)
        th = np.array([_thesis_expectation(int(a), int(b), k) for a, b in zip(Nf, Rf)])
        ok = th[:, 0] > 0
        out[f"map_at_k_thesis@{k}"] = (float(np.sum(w[ok] * th[ok, 0] * th[ok, 1]) / np.sum(w[ok] * th[ok, 0]))
                                       if ok.any() else float("nan"))
    out["map@R"] = avg(np.array([_expected_gain(a, b, int(b)) / max(b, 1) for a, b in zip(Nf, Rf)]), has)
    out["map"] = avg(np.array([_expected_gain(a, b, int(a)) / max(b, 1) for a, b in zip(Nf, Rf)]), has)
    return out


def random_classification_baseline(labels: np.ndarray, allowed: np.ndarray) -> dict[str, float]:
    """Expected 1-NN accuracy and macro recall of a random neighbour; macro precision and F1 as the
    ratio of expectations (first order). Classes are those of ``labels``."""
    y = np.asarray(labels)
    classes = np.unique(y)
    onehot = _onehot(y, classes)
    counts = allowed.astype(np.float64) @ onehot  # [Q, C] candidates of each class
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # P(predict class c | query q)
    tp = (onehot * p).sum(axis=0)
    n_true, n_pred = onehot.sum(axis=0), p.sum(axis=0)
    prec = np.where(n_pred > 0, tp / np.maximum(n_pred, 1e-300), 0.0)
    rec = tp / n_true
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
    return {"accuracy": float((onehot * p).sum(axis=1).mean()), "macro_precision": float(prec.mean()),
            "macro_recall": float(rec.mean()), "macro_f1": float(f1.mean())}


# --------------------------------------------------------------------------- the whole suite
@dataclass(frozen=True)
class SuiteResult:
    """``summary[protocol][metric][level]`` -> dict of metrics, CIs, baselines; ``per_query`` likewise
    holds the per-query arrays (``correct@1``, ``ap@K``, ``ap@R``, ``top1``, ...)."""

    summary: dict
    per_query: dict


def evaluate(
    X: np.ndarray,
    labels: Mapping[str, np.ndarray],
    folds: np.ndarray,
    *,
    protocols: Sequence[str] = PROTOCOLS,
    metrics: Sequence[str] = DISTANCES,
    ks: Sequence[int] = KS,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> SuiteResult:
    """Every metric for every protocol x distance x label level, with bootstrap CIs and baselines."""
    X = np.asarray(X)
    n = X.shape[0]
    folds = np.asarray(folds)
    for name, y in labels.items():
        if np.asarray(y).shape != (n,):
            raise MetricsError(f"labels {name!r} have shape {np.asarray(y).shape}, expected ({n},)")
    if folds.shape != (n,):
        raise MetricsError(f"folds have shape {folds.shape}, expected ({n},)")
    weights = bootstrap_weights(n, n_boot=n_boot, seed=seed) if n_boot > 0 else None
    summary: dict = {}
    per_query: dict = {}
    for metric in metrics:
        scores = similarity_matrix(X, metric)
        for protocol in protocols:
            allowed = candidate_mask(folds, protocol)
            ranking = rank_scores(scores, allowed, protocol=protocol, metric=metric)
            top1 = ranking.order[:, 0]
            for lvl, y in labels.items():
                y = np.asarray(y)
                rel, n_rel = relevance(ranking, y)
                pq = per_query_metrics(rel, n_rel, ks)
                m = means(pq)
                m.update(macro_prf(y, y[top1]))
                base = random_baseline(ranking.n_candidates, n_rel, ks)
                base.update(random_classification_baseline(y, allowed))
                ci = {}
                if weights is not None:
                    keys = list(pq)
                    boots = bootstrap_means(np.column_stack([pq[k] for k in keys]), weights)  # one matrix product
                    for j, key in enumerate(keys):
                        ci[summary_name(key)] = percentile_ci(boots[:, j], level)
                    for key, v in weighted_macro_prf(y, y[top1], weights).items():
                        ci[key] = percentile_ci(v, level)
                summary.setdefault(protocol, {}).setdefault(metric, {})[lvl] = {
                    "n_queries": int(n),
                    "mean_candidates": float(ranking.n_candidates.mean()),
                    "mean_relevant": float(n_rel.mean()),
                    "metrics": m,
                    "ci": ci,
                    "random": base,
                }
                pq["top1"] = top1
                per_query.setdefault(protocol, {}).setdefault(metric, {})[lvl] = pq
    return SuiteResult(summary=summary, per_query=per_query)

"""Anomaly-detection metrics as the DCASE Task 2 baseline computes them, plus ROC plots.

* AUC  = ``sklearn.metrics.roc_auc_score(y_true, score)``;
* pAUC = ``sklearn.metrics.roc_auc_score(y_true, score, max_fpr=0.1)``, exactly the baseline's
  call: scikit-learn returns the McClish-standardised partial AUC over FPR in [0, 0.1]
  (0.5 for a chance detector, 1 for a perfect one), not the raw area divided by 0.1.

``y_true`` is 1 for anomalous clips and 0 for normal ones; scores are higher for more
anomalous clips. Groups (a machine type and ID, or an ESC-50 class) are summarised per machine
type and overall by arithmetic and harmonic means (``scipy.stats.hmean``, as the DCASE 2021+
evaluators do).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from audiosim.errors import MetricsError
from audiosim.eval.asd_stats import check_labels_scores

MAX_FPR = 0.1


@dataclass(frozen=True)
class GroupMetrics:
    """AUC and pAUC of one group of test clips (e.g. machine ``pump`` ID ``06``)."""

    machine: str
    machine_id: str
    n_normal: int
    n_anomaly: int
    auc: float
    pauc: float

    def to_dict(self) -> dict:
        return asdict(self)


def auc_pauc(y_true: Sequence[int], scores: Sequence[float], *, max_fpr: float = MAX_FPR) -> tuple[float, float]:
    """(AUC, pAUC at FPR <= ``max_fpr``) as the DCASE baseline computes them with scikit-learn."""
    from sklearn.metrics import roc_auc_score

    y, s = check_labels_scores(y_true, scores)
    return float(roc_auc_score(y, s)), float(roc_auc_score(y, s, max_fpr=max_fpr))


def group_metrics(machine: str, machine_id: str, y_true: Sequence[int], scores: Sequence[float], *,
                  max_fpr: float = MAX_FPR) -> GroupMetrics:
    y = np.asarray(y_true).astype(int)
    auc, pauc = auc_pauc(y, scores, max_fpr=max_fpr)
    return GroupMetrics(machine=machine, machine_id=machine_id, n_normal=int((y == 0).sum()),
                        n_anomaly=int((y == 1).sum()), auc=auc, pauc=pauc)


def hmean(values: Iterable[float]) -> float:
    """Harmonic mean (0 if any value is 0)."""
    from scipy.stats import hmean as _hmean

    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return float("nan")
    if (v <= 0).any():
        return 0.0
    return float(_hmean(v))


def means(groups: Sequence[GroupMetrics]) -> dict:
    """Arithmetic and harmonic means of AUC and pAUC over ``groups``."""
    auc = [g.auc for g in groups]
    pauc = [g.pauc for g in groups]
    return {"n_groups": len(groups), "auc_mean": float(np.mean(auc)), "pauc_mean": float(np.mean(pauc)),
            "auc_hmean": hmean(auc), "pauc_hmean": hmean(pauc)}


def summarize(groups: Sequence[GroupMetrics]) -> dict:
    """Per-group rows, means per machine type (over its IDs), and means over all groups."""
    if not groups:
        raise MetricsError("no groups to summarise")
    machines: dict[str, list[GroupMetrics]] = {}
    for g in groups:
        machines.setdefault(g.machine, []).append(g)
    return {"groups": [g.to_dict() for g in groups],
            "machines": {m: means(gs) for m, gs in sorted(machines.items())},
            "overall": means(groups)}


def roc_png(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: str | Path, *,
            title: str = "ROC", max_fpr: float = MAX_FPR) -> Path:
    """One ROC curve per named (y_true, scores) pair, with the pAUC region shaded; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    try:
        ax.axvspan(0, max_fpr, color="0.9", label=f"pAUC region (FPR <= {max_fpr:g})")
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1)
        for name, (y, s) in curves.items():
            fpr, tpr, _ = roc_curve(np.asarray(y).astype(int), np.asarray(s, dtype=np.float64))
            auc, pauc = auc_pauc(y, s, max_fpr=max_fpr)
            ax.plot(fpr, tpr, lw=1.5, label=f"{name}: AUC {auc:.3f}, pAUC {pauc:.3f}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def markdown_table(groups: Sequence[GroupMetrics]) -> str:
    """The DCASE-style per machine type / ID table with arithmetic and harmonic means."""
    s = summarize(groups)
    lines = ["| machine | id | normal | anomalous | AUC | pAUC |", "|---|---|---:|---:|---:|---:|"]
    for m, stats in s["machines"].items():
        for g in (g for g in groups if g.machine == m):
            lines.append(f"| {m} | {g.machine_id} | {g.n_normal} | {g.n_anomaly} | {g.auc:.4f} | {g.pauc:.4f} |")
        lines.append(f"| {m} | arithmetic mean | | | {stats['auc_mean']:.4f} | {stats['pauc_mean']:.4f} |")
        lines.append(f"| {m} | harmonic mean | | | {stats['auc_hmean']:.4f} | {stats['pauc_hmean']:.4f} |")
    o = s["overall"]
    lines.append(f"| all | arithmetic mean | | | {o['auc_mean']:.4f} | {o['pauc_mean']:.4f} |")
    lines.append(f"| all | harmonic mean | | | {o['auc_hmean']:.4f} | {o['pauc_hmean']:.4f} |")
    return "\n".join(lines)

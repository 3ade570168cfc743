"""ESC-50 novelty benchmark: each class in turn is "normal", every other class is a novelty.

For each of the 50 classes: fit an anomaly scorer on that class's clips in folds 1-4 (32 clips),
score all 400 clips of fold 5 (its own 8 are normal, the other 392 anomalous), and compute AUC
and pAUC (FPR <= 0.1, scikit-learn's standardised partial AUC as the DCASE baseline uses it).
The benchmark reports the mean (and harmonic mean, and a bootstrap 95 % interval over classes)
of the 50 per-class values for every embedder x pooling x scorer, in ``results.json`` and
``report.md``. Clips are embedded once per embedder through the ESC-50 benchmark cache
(:func:`audiosim.eval.bench.esc50_vectors`), so the retrieval benchmark and this one share it.
No label is used to fit anything except the choice of which class is normal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.anomaly.scorers import ScorerConfig, make_scorer
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.errors import DatasetError
from audiosim.eval.anomaly_metrics import auc_pauc, hmean
from audiosim.eval.esc50_cache import esc50_vectors
from audiosim.eval.metrics import mean_ci
from audiosim.eval.report import write_results

TEST_FOLD = 5
DEFAULT_SCORERS = (
    "mahalanobis:covariance=ledoitwolf",
    "mahalanobis:covariance=oas",
    "mahalanobis:covariance=empirical,pca=16",
    "mahalanobis:covariance=ledoitwolf,l2=true",
    "knn:k=1,metric=cosine",
    "knn:k=5,metric=cosine",
    "knn:k=20,metric=cosine",
    "knn:k=5,metric=euclidean",
    "lof:k=20,metric=cosine",
)
DEFAULT_POOLINGS = ("mu", "l2mean")


def novelty_aucs(X: np.ndarray, targets: np.ndarray, folds: np.ndarray, scorer: str, *, test_fold: int = TEST_FOLD,
                 max_fpr: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, AUC per class, pAUC per class): fit on a class's other-fold clips, score the test fold."""

    targets, folds = np.asarray(targets), np.asarray(folds)
    test = folds == test_fold
    if not test.any():
        raise DatasetError(f"no clips in test fold {test_fold}")
    classes = np.unique(targets)
    auc, pauc = np.zeros(classes.size), np.zeros(classes.size)
    for j, c in enumerate(classes):
        train = (targets == c) & ~test
        model = make_scorer(scorer).fit(X[train])
        auc[j], pauc[j] = auc_pauc((targets[test] != c).astype(int), model.anomaly_score(X[test]), max_fpr=max_fpr)
    return classes, auc, pauc


def summarize_classes(auc: np.ndarray, pauc: np.ndarray) -> dict:

    return {"auc_mean": float(auc.mean()), "auc_hmean": hmean(auc), "auc_std": float(auc.std(ddof=1)),
            "auc_ci95": mean_ci(auc), "auc_min": float(auc.min()),
            "pauc_mean": float(pauc.mean()), "pauc_hmean": hmean(pauc), "pauc_ci95": mean_ci(pauc)}


@dataclass(frozen=True)
class NoveltyConfig:
    out: str
    embedders: tuple[str, ...] = ("yamnet", "logmel")
    poolings: tuple[str, ...] = DEFAULT_POOLINGS
    scorers: tuple[str, ...] = DEFAULT_SCORERS
    weights: dict = field(default_factory=dict)  # embedder name -> weights path
    esc50: str | None = None
    cache: str | None = None
    test_fold: int = TEST_FOLD
    max_fpr: float = 0.1
    progress: bool = True
    command: str | None = None


def run_novelty(config: NoveltyConfig) -> dict:
    """Evaluate every embedder x pooling x scorer; write results.json and report.md into ``config.out``."""

    t_start = time.perf_counter()
    specs = [ScorerConfig.parse(s).spec for s in config.scorers]
    poolings = [PoolingSpec.parse(p).name for p in config.poolings]
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"benchmark": "esc50-novelty", "test_fold": config.test_fold, "max_fpr": config.max_fpr,
                     "protocol": (f"per class: fit on its clips outside fold {config.test_fold}, score every fold-"
                                  f"{config.test_fold} clip (own class normal, the 49 others anomalous)"),
                     "pauc_definition": "sklearn roc_auc_score(max_fpr) (McClish-standardised), as the DCASE baseline",
                     "command": config.command, "runs": []}
    class_names = None
    for emb in config.embedders:
        for pooling in poolings:
            t0 = time.perf_counter()
            esc, X = esc50_vectors(embedder=emb, pooling=pooling, weights=config.weights.get(emb), esc50=config.esc50,
                                   cache=config.cache, progress=config.progress)
            embed_s = time.perf_counter() - t0
            targets, folds = esc.targets, esc.folds
            class_names = class_names or esc.class_names("sub")
            results["dataset"] = {"root": str(esc.root), "clips": len(esc)}
            for spec in specs:
                t1 = time.perf_counter()
                classes, auc, pauc = novelty_aucs(X, targets, folds, spec, test_fold=config.test_fold, max_fpr=config.max_fpr)
                entry = {"embedder": emb, "pooling": pooling, "scorer": spec, "dim": int(X.shape[1]),
                         **summarize_classes(auc, pauc),
                         "per_class": {class_names[int(c)]: {"auc": float(a), "pauc": float(p)}
                                       for c, a, p in zip(classes, auc, pauc)},
                         "seconds": {"vectors": round(embed_s, 2), "scoring": round(time.perf_counter() - t1, 2)}}
                results["runs"].append(entry)
                if config.progress:
                    print(f"{emb:<8} {pooling:<16} {spec:<48} AUC {entry['auc_mean']:.4f}  pAUC {entry['pauc_mean']:.4f}",
                          flush=True)
                write_results(out, results)
    best = {}
    for r in results["runs"]:
        if r["embedder"] not in best or r["auc_mean"] > best[r["embedder"]]["auc_mean"]:
            best[r["embedder"]] = r
    results["best"] = {e: {k: r[k] for k in ("pooling", "scorer", "auc_mean", "pauc_mean", "auc_ci95")} for e, r in best.items()}
    results["seconds"] = round(time.perf_counter() - t_start, 2)
    write_results(out, results)
    (out / "report.md").write_text(report(results))
    return results


def report(results: dict) -> str:
    lines = ["# ESC-50 novelty benchmark", "",
             f"- {results['protocol']}; 50 classes, each giving one AUC and one pAUC (FPR <= {results['max_fpr']:g}, "
             f"{results['pauc_definition']}).",
             "- Table: mean over the 50 classes, a 95 % bootstrap interval of the mean AUC (classes resampled), "
             "the harmonic mean and the worst class.",
             "- Mahalanobis scores are squared Mahalanobis distances; `l2=true` L2-normalises vectors before fitting.",
             f"- run time {results.get('seconds', '?')} s"]
    if results.get("command"):
        lines.append(f"- command: `{results['command']}`")
    lines += ["", "## Best per embedder", "", "| embedder | pooling | scorer | AUC mean | pAUC mean |", "|---|---|---|---:|---:|"]
    for e, b in results.get("best", {}).items():
        lines.append(f"| {e} | {b['pooling']} | `{b['scorer']}` | {b['auc_mean']:.4f} | {b['pauc_mean']:.4f} |")
    lines += ["", "## All runs", "",
              "| embedder | pooling | scorer | dim | AUC mean | AUC 95 % CI | AUC hmean | worst class AUC | pAUC mean | pAUC hmean |",
              "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in sorted(results["runs"], key=lambda r: (r["embedder"], -r["auc_mean"])):
        lo, hi = r["auc_ci95"]
        lines.append(f"| {r['embedder']} | {r['pooling']} | `{r['scorer']}` | {r['dim']} | {r['auc_mean']:.4f} | "
                     f"[{lo:.4f}, {hi:.4f}] | {r['auc_hmean']:.4f} | {r['auc_min']:.4f} | {r['pauc_mean']:.4f} | "
                     f"{r['pauc_hmean']:.4f} |")
    return "\n".join(lines) + "\n"


def parse_weights(values: Sequence[str], embedders: Sequence[str]) -> dict:
    """``--weights PATH`` (one embedder) or ``--weights NAME=PATH`` (any number) -> {name: path}."""
    out = {}
    for v in values:
        name, eq, path = v.partition("=")
        if eq and name in embedders:
            out[name] = path
        elif len(embedders) == 1:
            out[embedders[0]] = v
        else:
            raise DatasetError(f"--weights {v!r}: with several embedders write NAME=PATH (NAME one of {', '.join(embedders)})")
    return out

"""Is the difference between two embedders real? Paired tests on per-query benchmark results.

* McNemar's test on per-query 1-NN correctness (statsmodels): the exact binomial test and the
  chi-square test with continuity correction, from the 2x2 table laid out as in the thesis
  (rows: run A correct / wrong; columns: run B correct / wrong).
* Holm-corrected p-values (``statsmodels.stats.multitest``) when more than two runs are compared
  (every pair is one hypothesis).
* A paired bootstrap over queries (seeded) of the MAP@K difference: mean, 95% percentile
  interval and a two-sided bootstrap p-value ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))``.

Runs are the output folders of ``audiosim bench`` (``per_query.npz`` + ``results.json``);
``DIR::VARIANT`` picks a variant of a sweep, plain ``DIR`` its best variant.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.errors import CompareError
from audiosim.eval.metrics import bootstrap_weights, percentile_ci
from audiosim.eval.report import PER_QUERY, RESULTS

SEP = "::"


@dataclass(frozen=True)
class Run:
    """One benchmark run's per-query results for one variant."""

    label: str
    path: Path
    variant: str
    filenames: np.ndarray
    arrays: dict

    def get(self, protocol: str, metric: str, level: str, key: str) -> np.ndarray:
        name = f"{protocol}/{metric}/{level}/{key}"
        if name not in self.arrays:
            have = sorted({"/".join(k.split("/")[:3]) for k in self.arrays})
            raise CompareError(f"{self.path}: no per-query {key!r} for {protocol}/{metric}/{level}; the run has {have}")
        return self.arrays[name]


def load_run(spec: str) -> Run:
    """Read ``DIR`` or ``DIR::VARIANT`` written by ``audiosim bench``."""

    path_text, _, variant = spec.partition(SEP)
    path = Path(path_text)
    try:
        results = json.loads((path / RESULTS).read_text())
        z = np.load(path / PER_QUERY)
    except (OSError, ValueError) as e:
        raise CompareError(f"{path} is not an `audiosim bench --out` folder ({e})") from e
    with z:
        variant = variant or results["best_variant"]
        if variant not in results["variants"]:
            raise CompareError(f"{path} has no variant {variant!r}; it has: {', '.join(results['variants'])}")
        prefix = variant + "/"
        arrays = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
        filenames = z["filenames"]
    emb = results["meta"]["embedder"]
    return Run(label=f"{emb['name']} [{variant}]", path=path, variant=variant, filenames=filenames, arrays=arrays)


def contingency(correct_a: np.ndarray, correct_b: np.ndarray) -> np.ndarray:
    """[[both correct, only A], [only B, both wrong]] counts."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise CompareError(f"per-query results differ in length ({a.size} vs {b.size})")
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]], dtype=np.int64)


def mcnemar_tests(table: np.ndarray) -> dict:
    """Exact McNemar p-value and the continuity-corrected chi-square statistic and p (statsmodels)."""
    from statsmodels.stats.contingency_tables import mcnemar

    discordant = [int(table[0, 1]), int(table[1, 0])]
    if sum(discordant) == 0:  # the runs agree on every query: no evidence of a difference
        return {"exact_p": 1.0, "chi2": 0.0, "chi2_p": 1.0, "discordant": discordant}
    exact = mcnemar(table, exact=True)
    chi2 = mcnemar(table, exact=False, correction=True)
    return {"exact_p": float(exact.pvalue), "chi2": float(chi2.statistic), "chi2_p": float(chi2.pvalue),
            "discordant": discordant}


def holm(pvalues: Sequence[float]) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap of mean(a) - mean(b) over the same resampled queries (NaN queries dropped pairwise)."""

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size == 0:
        raise CompareError("no query has a defined value in both runs")
    rng = np.random.default_rng(seed)
    boots = np.concatenate([  # chunks of 1000 resamples keep memory flat
        (bootstrap_weights(d.size, n_boot=m, seed=int(rng.integers(2**32))) @ d) / d.size
        for m in [1000] * (n_boot // 1000) + ([n_boot % 1000] if n_boot % 1000 else [])
    ])
    lo, hi = percentile_ci(boots, level)
    p = min(1.0, 2 * min(float(np.mean(boots <= 0)), float(np.mean(boots >= 0))))
    return {"diff": float(d.mean()), "ci": [lo, hi], "p": p, "n_boot": n_boot, "seed": seed}


def compare_runs(runs: Sequence[Run], *, protocol: str = "xfold", metric: str = "cosine", level: str = "sub",
                 ks: Sequence[int] = (5, 10), n_boot: int = 10000, seed: int = 0) -> dict:
    """All pairwise comparisons of ``runs`` under one protocol, distance and label level."""
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    ref = runs[0].filenames
    for r in runs[1:]:
        if r.filenames.shape != ref.shape or not np.array_equal(r.filenames, ref):
            raise CompareError(f"{r.path} and {runs[0].path} were not run on the same clips in the same order")
    pairs = []
    for a, b in itertools.combinations(runs, 2):
        ca, cb = a.get(protocol, metric, level, "correct@1"), b.get(protocol, metric, level, "correct@1")
        table = contingency(ca > 0.5, cb > 0.5)
        boot = {f"map@{k}": paired_bootstrap(a.get(protocol, metric, level, f"ap@{k}"),
                                             b.get(protocol, metric, level, f"ap@{k}"), n_boot=n_boot, seed=seed)
                for k in ks}
        pairs.append({"a": a.label, "b": b.label, "a_path": str(a.path), "b_path": str(b.path),
                      "accuracy_a": float(np.mean(ca)), "accuracy_b": float(np.mean(cb)),
                      "table": table.tolist(), "mcnemar": mcnemar_tests(table), "bootstrap": boot})
    if len(runs) > 2:
        for pair, p in zip(pairs, holm([x["mcnemar"]["exact_p"] for x in pairs])):
            pair["mcnemar"]["holm_exact_p"] = p
    return {"protocol": protocol, "metric": metric, "level": level, "n_queries": int(ref.size), "pairs": pairs}


def format_comparison(result: dict) -> str:
    """Human-readable 2x2 tables and tests (every figure names its protocol)."""
    proto, metric, level = result["protocol"], result["metric"], result["level"]
    lines = [f"protocol {proto}, {metric}, {level}-class 1-NN correctness, {result['n_queries']} queries"]
    for pair in result["pairs"]:
        a, b, t = pair["a"], pair["b"], pair["table"]
        w = max(len(a), 12)
        lines += [
            "",
            f"{a} (accuracy {pair['accuracy_a']:.4f}) vs {b} (accuracy {pair['accuracy_b']:.4f})  [{proto}]",
            f"{'':<{w}}  {'B correct':>10}  {'B wrong':>10}",
            f"{'A correct':<{w}}  {t[0][0]:>10}  {t[0][1]:>10}",
            f"{'A wrong':<{w}}  {t[1][0]:>10}  {t[1][1]:>10}",
            f"  (A = {a}; B = {b})",
        ]
        m = pair["mcnemar"]
        line = f"McNemar [{proto}]: exact p = {m['exact_p']:.4g}; chi-square (continuity-corrected) = {m['chi2']:.3f}, p = {m['chi2_p']:.4g}"
        if "holm_exact_p" in m:
            line += f"; Holm-adjusted exact p = {m['holm_exact_p']:.4g}"
        lines.append(line)
        for name, bs in pair["bootstrap"].items():
            p = f"p = {bs['p']:.4g}" if bs["p"] > 0 else f"p < {1 / bs['n_boot']:.0e} (no resample reached 0)"
            lines.append(f"paired bootstrap [{proto}] {name.upper()} A - B = {bs['diff']:+.4f}, "
                         f"95% CI [{bs['ci'][0]:+.4f}, {bs['ci'][1]:+.4f}], {p} ({bs['n_boot']} resamples, seed {bs['seed']})")
    return "\n".join(lines)

"""``audiosim anomaly eval DATASET --detector ...``: trained detectors on a DCASE-layout folder, with statistics.

For each detector: one model per machine type and section/ID, fitted on that group's normal training clips
(source and target domains); the classifier detectors (``id_classifier``, ``metric``) learn the sections of
one machine type together, so they get one model per machine type. Features are computed once per clip
(:class:`~audiosim.anomaly.detectors.FeatureCache`) and shared by all detectors.

Writes ``results.json`` (AUC and DCASE pAUC per machine type, section and domain; the year's official score;
bootstrap 95 % intervals; pairwise DeLong tests per section with Holm correction), ``scores.csv`` (every test
clip's score, threshold and verdict), ``frame_scores.npz`` (per-frame scores), ``report.md`` and
``roc_<detector>.png`` / ``hist_<detector>.png``. :func:`compare_eval_runs` tests two saved runs against each other.
"""

from __future__ import annotations

import csv
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.anomaly.detectors import CLASSIFIERS, FeatureCache, make_detector
from audiosim.errors import DatasetError
from audiosim.eval.asd_stats import MAX_FPR, auc, bootstrap_official, delong_test, holm, official_score, pauc
from audiosim.eval.dcase_layout import AsdClip, read_dcase
from audiosim.eval.report import write_results
from audiosim.files import slug


@dataclass(frozen=True)
class DetectorEvalConfig:
    detectors: tuple[str, ...] = ("ae",)
    year: int | None = None  # None: guessed from the layout
    device: str | None = None
    tune: int = 0
    n_boot: int = 200
    max_fpr: float = MAX_FPR
    plots: bool = True
    cache_dir: str | None = None
    progress: bool = True
    command: str | None = None


def _groups(train: Sequence[AsdClip], test: Sequence[AsdClip], classifier: bool):
    """(machine, sections) units to fit: per machine type for classifiers, else per machine type and section."""
    machines = sorted({c.machine for c in test})
    for m in machines:
        sections = sorted({c.section for c in test if c.machine == m})
        if classifier:
            yield m, sections
        else:
            for s in sections:
                yield m, [s]


def evaluate_detector(spec: str, train: Sequence[AsdClip], test: Sequence[AsdClip], *, cache: FeatureCache,
                      device: str | None = None, tune: int = 0, log=print) -> dict:
    """Fit and score one detector over every group; test-clip scores aligned with ``test``."""
    kind = spec.split(":")[0]
    classifier = kind in CLASSIFIERS
    scores = np.full(len(test), np.nan)
    thresholds = np.full(len(test), np.nan)
    frames: dict[str, np.ndarray] = {}
    fits = {}
    for machine, sections in _groups(train, test, classifier):
        tr = [c for c in train if c.machine == machine and c.section in sections]
        te = [i for i, c in enumerate(test) if c.machine == machine and c.section in sections]
        if not tr:
            raise DatasetError(f"{machine} section/ID {', '.join(sections)}: no normal training clips")
        t0 = time.perf_counter()
        det = make_detector(spec, device=device)
        det.fit([c.path for c in tr], labels=[c.section for c in tr] if classifier else None, cache=cache, tune=tune)
        res = det.score([test[i].path for i in te], labels=[test[i].section for i in te] if classifier else None,
                        cache=cache)
        for i, r in zip(te, res):
            scores[i], thresholds[i] = r.score, det.threshold_
            frames[test[i].path] = r.frames
        name = f"{machine}/{'+'.join(sections)}"
        fits[name] = {"n_train": len(tr), "threshold": det.threshold_, "threshold_fit": det.threshold_fit_,
                      "seconds": round(time.perf_counter() - t0, 2), "final_loss": det.history_[-1] if det.history_ else None,
                      "tuning": det.tuning_ or None, "spec": det.spec}
        log(f"  {spec} {name}: fitted on {len(tr)} clips in {fits[name]['seconds']} s")
    return {"scores": scores, "thresholds": thresholds, "frames": frames, "fits": fits}


def group_table(test: Sequence[AsdClip], scores: np.ndarray, *, max_fpr: float) -> list[dict]:
    """AUC and pAUC per machine type, section and domain (and the section's clips of both domains)."""
    y = np.array([c.anomalous for c in test], dtype=int)
    rows = []
    for m, sec in sorted({(c.machine, c.section) for c in test}):
        in_sec = np.array([(c.machine, c.section) == (m, sec) for c in test])
        doms = sorted({c.domain for c, k in zip(test, in_sec) if k})
        for d in doms + (["all"] if len(doms) > 1 else []):
            sel = in_sec & (np.array([c.domain == d for c in test]) if d != "all" else True)
            if 0 < y[sel].sum() < sel.sum():
                rows.append({"machine": m, "section": sec, "domain": d, "n_normal": int((y[sel] == 0).sum()),
                             "n_anomaly": int(y[sel].sum()), "auc": auc(y[sel], scores[sel]),
                             "pauc": pauc(y[sel], scores[sel], max_fpr=max_fpr)})
    return rows


def pairwise_delong(test: Sequence[AsdClip], all_scores: dict[str, np.ndarray]) -> list[dict]:
    """DeLong tests per (machine, section) between every two detectors; Holm over all tests together."""
    y = np.array([c.anomalous for c in test], dtype=int)
    out = []
    for a, b in itertools.combinations(all_scores, 2):
        for m, sec in sorted({(c.machine, c.section) for c in test}):
            sel = np.array([(c.machine, c.section) == (m, sec) for c in test])
            t = delong_test(y[sel], all_scores[a][sel], all_scores[b][sel])
            out.append({"a": a, "b": b, "machine": m, "section": sec, **t})
    for row, p in zip(out, holm([r["p"] for r in out])):
        row["p_holm"] = p
    return out


def _plots(out: Path, spec: str, test, scores, thresholds, max_fpr: float) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audiosim.eval.asd_stats import roc_points

    y = np.array([c.anomalous for c in test], dtype=int)
    names = {}
    fig, ax = plt.subplots(figsize=(5.5, 5))
    try:
        ax.axvspan(0, max_fpr, color="0.9")
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1)
        for m in sorted({c.machine for c in test}):
            sel = np.array([c.machine == m for c in test])
            f, t = roc_points(y[sel], scores[sel])
            ax.plot(f, t, lw=1.5, label=f"{m}: AUC {auc(y[sel], scores[sel]):.3f}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC | {spec}")
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        names["roc_png"] = f"roc_{slug(spec)}.png"
        fig.savefig(out / names["roc_png"], dpi=100)
    finally:
        plt.close(fig)
    fig, axes = plt.subplots(1, len({c.machine for c in test}), figsize=(4 * len({c.machine for c in test}), 3.2),
                             squeeze=False)
    try:
        for ax, m in zip(axes[0], sorted({c.machine for c in test})):
            sel = np.array([c.machine == m for c in test])
            norm = scores[sel & (y == 0)] / thresholds[sel & (y == 0)]
            anom = scores[sel & (y == 1)] / thresholds[sel & (y == 1)]
            bins = np.linspace(min(norm.min(), anom.min()), max(norm.max(), anom.max()), 30)
            ax.hist(norm, bins=bins, alpha=0.6, label="normal")
            ax.hist(anom, bins=bins, alpha=0.6, label="anomalous")
            ax.axvline(1.0, color="k", ls="--", lw=1, label="threshold")
            ax.set_title(f"{m}", fontsize=9)
            ax.set_xlabel("score / threshold")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(spec, fontsize=9)
        fig.tight_layout()
        names["hist_png"] = f"hist_{slug(spec)}.png"
        fig.savefig(out / names["hist_png"], dpi=100)
    finally:
        plt.close(fig)
    return names


def run_detector_eval(root: str | Path, out: str | Path, config: DetectorEvalConfig) -> dict:
    t0 = time.perf_counter()
    ds = read_dcase(root)
    year = config.year or ds.guessed_year
    train, test = ds.train(), ds.test()
    if not test:
        raise DatasetError(f"{root}: no test clips")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(config.cache_dir)
    log = print if config.progress else (lambda *a, **k: None)
    results = {"dataset": ds.root, "layout": ds.style, "year": year, "max_fpr": config.max_fpr,
               "pauc_definition": "DCASE: area under ROC over FPR in [0, max_fpr] divided by max_fpr",
               "clips": {"train": len(train), "test_normal": sum(not c.anomalous for c in test),
                         "test_anomalous": sum(c.anomalous for c in test)},
               "synthetic": (Path(root) / "SYNTHETIC.txt").is_file(), "detectors": {}, "command": config.command}
    all_scores: dict[str, np.ndarray] = {}
    rows, frames = [], {}
    tc = [c.test_clip() for c in test]
    for spec in config.detectors:
        t1 = time.perf_counter()
        ev = evaluate_detector(spec, train, test, cache=cache, device=config.device, tune=config.tune, log=log)
        s = ev["scores"]
        all_scores[spec] = s
        table = group_table(test, s, max_fpr=config.max_fpr)
        entry = {"groups": table, "official": official_score(tc, s, year=year, max_fpr=config.max_fpr),
                 "auc_mean": float(np.mean([r["auc"] for r in table if r["domain"] != "all"])),
                 "pauc_mean": float(np.mean([r["pauc"] for r in table if r["domain"] != "all"])),
                 "machines": {}, "fits": ev["fits"], "seconds": round(time.perf_counter() - t1, 2)}
        entry["official"].pop("terms")
        for m in sorted({c.machine for c in test}):
            mr = [r for r in table if r["machine"] == m and r["domain"] != "all"]
            entry["machines"][m] = {"auc_mean": float(np.mean([r["auc"] for r in mr])),
                                    "pauc_mean": float(np.mean([r["pauc"] for r in mr]))}
        if config.n_boot:
            entry["bootstrap"] = bootstrap_official(tc, s, year=year, n_boot=config.n_boot, max_fpr=config.max_fpr)
        if config.plots:
            entry.update(_plots(out, spec, test, s, ev["thresholds"], config.max_fpr))
        results["detectors"][spec] = entry
        rows += [{"detector": spec, "machine": c.machine, "section": c.section, "domain": c.domain, "file": c.path,
                  "anomalous": int(c.anomalous), "score": float(sc), "threshold": float(th),
                  "verdict": "anomalous" if sc > th else "normal"} for c, sc, th in zip(test, s, ev["thresholds"])]
        frames.update({f"{spec}|{k}": v for k, v in ev["frames"].items()})
        log(f"{spec}: mean AUC {entry['auc_mean']:.4f}, official {year} score {entry['official']['score']:.4f}")
    results["delong"] = pairwise_delong(test, all_scores) if len(all_scores) > 1 else []
    results["best_detector"] = max(results["detectors"], key=lambda d: results["detectors"][d]["auc_mean"])
    results["features"] = {"computed": cache.computed, "reused": cache.hits}
    results["seconds"] = round(time.perf_counter() - t0, 2)
    write_results(out, results)
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    np.savez_compressed(out / "frame_scores.npz", **{f"f{i}": v for i, v in enumerate(frames.values())},
                        keys=np.array(list(frames.keys())))
    (out / "report.md").write_text(report(results))
    return results


def summary_table(results: dict) -> str:
    yr = results["year"]
    lines = [f"| detector | mean AUC | mean pAUC | official {yr} score | 95 % interval (score) |",
             "|---|---:|---:|---:|---|"]
    for spec, e in results["detectors"].items():
        ci = e.get("bootstrap", {}).get("score")
        ci_text = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        lines.append(f"| `{spec}` | {e['auc_mean']:.4f} | {e['pauc_mean']:.4f} | {e['official']['score']:.4f} | {ci_text} |")
    return "\n".join(lines)


def report(results: dict) -> str:
    c = results["clips"]
    lines = ["# Anomalous sound detection: trained detectors (DCASE layout)", "",
             f"- dataset: `{results['dataset']}`{' (SYNTHETIC, made by audiosim datasets synth-machines)' if results['synthetic'] else ''}"
             f", layout {results['layout']}, scored as DCASE {results['year']}",
             f"- {c['train']} normal training clips; test: {c['test_normal']} normal, {c['test_anomalous']} anomalous",
             f"- pAUC: {results['pauc_definition']} (max FPR {results['max_fpr']:g})",
             f"- features computed {results['features']['computed']} times, reused {results['features']['reused']} times; "
             f"{results['seconds']} s in all"]
    if results.get("command"):
        lines.append(f"- command: `{results['command']}`")
    lines += ["", "## Summary", "", summary_table(results)]
    for spec, e in results["detectors"].items():
        lines += ["", f"## `{spec}`", "", "| machine | section | domain | normal | anomalous | AUC | pAUC |",
                  "|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['machine']} | {r['section']} | {r['domain']} | {r['n_normal']} | {r['n_anomaly']} | "
                  f"{r['auc']:.4f} | {r['pauc']:.4f} |" for r in e["groups"]]
        if e.get("roc_png"):
            lines += ["", f"![ROC]({e['roc_png']}) ![scores]({e['hist_png']})"]
    if results["delong"]:
        lines += ["", "## DeLong tests (per section, Holm-corrected over all tests)", "",
                  "| A | B | machine | section | AUC A | AUC B | p | p (Holm) |", "|---|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| `{r['a']}` | `{r['b']}` | {r['machine']} | {r['section']} | {r['auc_a']:.4f} | {r['auc_b']:.4f} | "
                  f"{r['p']:.3g} | {r['p_holm']:.3g} |" for r in results["delong"]]
    return "\n".join(lines) + "\n"


def _read_scores(run: str | Path) -> dict[str, dict[str, tuple[int, float, str, str]]]:
    p = Path(run) / "scores.csv"
    if not p.is_file():
        raise DatasetError(f"{run} holds no scores.csv; pass folders written by `audiosim anomaly eval --detector ... --out`")
    out: dict = {}
    try:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                out.setdefault(r["detector"], {})[r["file"]] = (int(r["anomalous"]), float(r["score"]), r["machine"],
                                                                 r["section"])
    except (KeyError, ValueError, csv.Error) as e:
        raise DatasetError(f"{p} is not a scores table written by audiosim ({e})") from None
    return out


def compare_eval_runs(run_a: str | Path, run_b: str | Path) -> dict:
    """DeLong tests (per machine type and section, Holm-corrected) between every detector of run A and of run B,
    on the test clips both runs scored."""
    a, b = _read_scores(run_a), _read_scores(run_b)
    tests = []
    for da, db in itertools.product(a, b):
        files = sorted(set(a[da]) & set(b[db]))
        if not files:
            continue
        for key in sorted({a[da][f][2:] for f in files}):
            fs = [f for f in files if a[da][f][2:] == key]
            y = [a[da][f][0] for f in fs]
            if 0 < sum(y) < len(y):
                t = delong_test(y, [a[da][f][1] for f in fs], [b[db][f][1] for f in fs])
                tests.append({"a": f"A:{da}", "b": f"B:{db}", "machine": key[0], "section": key[1], "n": len(fs), **t})
    if not tests:
        raise DatasetError(f"{run_a} and {run_b} share no scored test clips with both classes")
    for row, p in zip(tests, holm([t["p"] for t in tests])):
        row["p_holm"] = p
    return {"run_a": str(run_a), "run_b": str(run_b), "tests": tests}

"""Benchmark outputs: ``results.json``, ``report.md`` (tables in the thesis's layout) and figures.

Figures use matplotlib's Agg backend, imported inside the functions that draw.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from audiosim.files import write_json_atomic
from audiosim.indexes.vectors import l2_normalize

RESULTS = "results.json"
REPORT = "report.md"
PER_QUERY = "per_query.npz"
PROTOCOL_TEXT = {
    "loo": "leave-one-out: every clip queries all 1999 others (the thesis's protocol)",
    "xfold": "cross-fold: a clip in fold k searches only the other four folds (no sibling takes of its source recording)",
}
CLS = (("accuracy", "Accuracy"), ("macro_precision", "Precision"), ("macro_recall", "Recall"), ("macro_f1", "F1"))


def write_results(out: str | Path, results: dict) -> Path:
    """``results.json`` in ``out``: strict JSON (NaN -> null), written atomically. Every benchmark writes through this."""

    return write_json_atomic(Path(out) / RESULTS, results, sort_keys=False)


def _f(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (variant names contain '|')."""
    return text.replace("|", "\\|")


def _with_ci(block: dict, key: str) -> str:
    v = block["metrics"].get(key)
    ci = block.get("ci", {}).get(key)
    if ci and ci[0] is not None and math.isfinite(ci[0]):
        return f"{_f(v)} [{_f(ci[0])}, {_f(ci[1])}]"
    return _f(v)


def variant_table(results: dict) -> list[str]:
    """One row per variant: sub/super 1-NN accuracy per protocol and distance."""
    variants = results["variants"]
    first = next(iter(variants.values()))["retrieval"]
    cols = [(p, m) for p in first for m in first[p]]
    head = "| variant | dim | " + " | ".join(f"{p} {m} sub | {p} {m} super" for p, m in cols) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(cols))]
    for name, v in variants.items():
        r = v["retrieval"]
        cells = [f"{_f(r[p][m]['sub']['metrics']['accuracy'])} | {_f(r[p][m]['super']['metrics']['accuracy'])}" for p, m in cols]
        mark = " **(best)**" if name == results.get("best_variant") else ""
        lines.append(f"| {_md(name)}{mark} | {v['dim']} | " + " | ".join(cells) + " |")
    cells = [f"{_f(first[p][m]['sub']['random']['accuracy'])} | {_f(first[p][m]['super']['random']['accuracy'])}" for p, m in cols]
    lines.append("| random baseline | - | " + " | ".join(cells) + " |")
    return lines


def classification_table(retrieval: dict, protocol: str, metric: str) -> list[str]:
    """Thesis layout: rows sub-/super-class, columns accuracy, precision, recall, F1 (macro), with 95% CIs."""
    lines = ["| protocol " + protocol + ", " + metric + " | " + " | ".join(h for _, h in CLS) + " |",
             "|---|" + "---|" * len(CLS)]
    for lvl, name in (("sub", "Sub-class (50)"), ("super", "Super-class (5)")):
        b = retrieval[protocol][metric].get(lvl)
        if b is None:
            continue
        lines.append(f"| {name} | " + " | ".join(_with_ci(b, k) for k, _ in CLS) + " |")
        lines.append(f"| {name}, random | " + " | ".join(_f(b["random"].get(k)) for k, _ in CLS) + " |")
    return lines


def at_k_table(block: dict, protocol: str, metric: str, level: str) -> list[str]:
    """Thesis layout: one row per K with MAP@K and Accuracy@K (plus P@K and the thesis's MAP variant)."""
    ks = sorted({int(k.split("@")[1]) for k in block["metrics"] if k.startswith("acc@")})
    lines = [f"| K ({protocol}, {metric}, {level}) | MAP@K | Acc@K | P@K | MAP@K thesis | random MAP@K | random Acc@K | random MAP@K thesis |",
             "|---|---|---|---|---|---|---|---|"]
    m, r = block["metrics"], block["random"]
    for k in ks:
        lines.append(f"| {k} | {_with_ci(block, f'map@{k}')} | {_with_ci(block, f'acc@{k}')} | {_f(m[f'p@{k}'])} | "
                     f"{_f(m[f'map_at_k_thesis@{k}'])} | {_f(r[f'map@{k}'])} | {_f(r[f'acc@{k}'])} | {_f(r[f'map_at_k_thesis@{k}'])} |")
    lines.append(f"| MAP@R | {_with_ci(block, 'map@R')} | | | | {_f(r['map@R'])} | | |")
    return lines


def probe_table(probes: dict) -> list[str]:
    lines = ["| probe (official 5 folds) | sub-class accuracy | super-class accuracy |", "|---|---|---|"]
    models = list(next(iter(probes.values())))
    for model in models:
        cells = []
        for lvl in ("sub", "super"):
            p = probes.get(lvl, {}).get(model)
            cells.append("-" if p is None else f"{_f(p['mean'])} ± {_f(p['std'])}" + ("" if p["converged"] else " (not converged)"))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: str | Path, results: dict) -> Path:
    meta = results["meta"]
    emb = meta["embedder"]
    best = results["best_variant"]
    v = results["variants"][best]
    lines = [f"# ESC-50 retrieval benchmark: {emb['name']} {emb['version']}", ""]
    if meta.get("command"):
        lines += [f"Command: `{meta['command']}`", ""]
    lines += [
        f"- Dataset: {meta['dataset']['clips']} clips, folds {meta['dataset']['folds']} ({meta['dataset']['root']})",
        f"- Embedder: {emb['name']} {emb['version']}, {emb['dim']}-d frames, weights sha256 {emb.get('weights_sha256') or '-'}",
        "- Protocols: " + "; ".join(f"`{p}` = {PROTOCOL_TEXT[p]}" for p in meta["protocols"]),
        f"- Post-processing: {meta['postprocess_note']}",
        f"- 95% confidence intervals: percentile bootstrap over queries ({meta['bootstrap']['n_boot']} resamples, "
        f"seed {meta['bootstrap']['seed']}); random baselines are analytic expectations for a random ranking.",
        "",
        "## Variants: 1-NN accuracy",
        "",
        *variant_table(results),
        "",
        f"## Best variant (highest `xfold` cosine sub-class accuracy): `{best}`",
        "",
    ]
    r = v["retrieval"]
    for protocol in r:
        for metric in r[protocol]:
            lines += [f"### 1-NN classification, protocol `{protocol}`, {metric}", "", *classification_table(r, protocol, metric), ""]
            for lvl in r[protocol][metric]:
                lines += [f"#### Retrieval at K, protocol `{protocol}`, {metric}, {lvl}-class", "",
                          *at_k_table(r[protocol][metric][lvl], protocol, metric, lvl), ""]
    if "probes" in v:
        lines += ["### Linear probes (mean ± std over the official folds)", "", *probe_table(v["probes"]), ""]
    for fig in results.get("figures", []):
        lines += [f"![{fig}]({fig})", ""]
    path = Path(out) / REPORT
    path.write_text("\n".join(lines))
    return path


def plot_confusion(path: str | Path, y_true: np.ndarray, y_pred: np.ndarray, names: list[str], title: str) -> Path:
    """A square confusion matrix (rows true, columns 1-NN predicted), counts shown by colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(names)))
    size = max(6.0, 0.22 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(cm, cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_xlabel("1-NN predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_pca(path: str | Path, X: np.ndarray, groups: np.ndarray, names: list[str], title: str) -> Path:
    """2-D PCA of the (L2-normalised) vectors, one colour per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA


    x = l2_normalize(X, dtype=np.float64)
    xy = PCA(n_components=2, random_state=0).fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    for g, name in enumerate(names):
        sel = groups == g
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=cmap(g % 10), label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_figures(out: str | Path, esc, X: np.ndarray, top1: dict, variant: str, embedder: str) -> list[str]:
    """Confusion matrices (sub-class, cosine, each protocol in ``top1``) and the PCA scatter; returns file names."""
    out = Path(out)
    files = []
    y = esc.targets
    for protocol, nn in top1.items():
        name = f"confusion_{protocol}_cosine.png"
        acc = float(np.mean(y[nn] == y))
        plot_confusion(out / name, y, y[nn], esc.class_names("sub"),
                       f"{embedder} [{variant}] 1-NN confusion, protocol {protocol}, cosine (accuracy {acc:.3f})")
        files.append(name)
    plot_pca(out / "pca_super.png", X, esc.super_targets, esc.class_names("super"), f"{embedder} [{variant}]: PCA by super-class")
    files.append("pca_super.png")
    return files

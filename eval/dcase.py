"""DCASE Task 2 style evaluation: fit on normal training clips, score the test clips, AUC/pAUC.

Dataset layout (the DCASE 2020 development set's), one folder per machine type::

    DATASET_DIR/<machine>/train/normal_id_XX_*.wav
    DATASET_DIR/<machine>/test/normal_id_XX_*.wav
    DATASET_DIR/<machine>/test/anomaly_id_XX_*.wav

``DATASET_DIR`` may also be a single machine folder (holding ``train/`` and ``test/``). Every
clip is embedded once with a registered embedder and pooled to one vector
(through the ingest pipeline, :mod:`audiosim.engine.ingest.pipeline`); for each machine type and ID an anomaly scorer is
fitted on that ID's normal training vectors (``fit_per="id"``, the default) or on all of the
machine type's training vectors (``fit_per="machine"``, as the DCASE 2020 autoencoder baseline
trains), and the ID's test clips are scored. AUC and pAUC per machine type and ID with their
arithmetic and harmonic means go to ``results.json`` and ``report.md``; per-clip scores to
``anomaly_scores.csv``; ROC curves to ``roc_<scorer>.png``.

Besides the vector scorers of :mod:`audiosim.anomaly.scorers`, the scorer ``vae[:epochs=..]``
(:class:`audiosim.anomaly.vae_scorer.VaeScorer`) trains one GLU-ConvVAE per group on the normal training clips and scores
clips by reconstruction error (torch needed; the embedder is then not used for that scorer).
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.anomaly.scorers import ScorerConfig, make_scorer
from audiosim.anomaly.vae_scorer import VaeScorer
from audiosim.engine.audio.decode import is_audio_path
from audiosim.engine.ingest.mappers import EmbedMapper
from audiosim.engine.ingest.pipeline import FileItem, ListSink, run_pipeline
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.errors import DatasetError
from audiosim.eval.anomaly_metrics import group_metrics, markdown_table, roc_png, summarize
from audiosim.eval.report import write_results
from audiosim.files import slug

NAME_RE = re.compile(r"^(normal|anomaly)_id_([0-9A-Za-z]+)_", re.IGNORECASE)
SPLITS = ("train", "test")
FIT_PER = ("id", "machine")


@dataclass(frozen=True)
class DcaseClip:
    path: str
    machine: str
    split: str
    machine_id: str
    anomalous: bool


def _machine_dirs(root: Path) -> list[Path]:
    if any((root / s).is_dir() for s in SPLITS):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any((p / s).is_dir() for s in SPLITS))


def scan_dcase(root: str | Path) -> list[DcaseClip]:
    """Every ``{normal,anomaly}_id_XX_*`` audio file under ``<machine>/{train,test}/`` (sorted)."""

    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the DCASE dataset root (holding <machine>/train and <machine>/test)")
    clips = []
    for mdir in _machine_dirs(base):
        for split in SPLITS:
            d = mdir / split
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                m = NAME_RE.match(p.name)
                if not (p.is_file() and is_audio_path(p) and m):
                    continue
                anomalous = m.group(1).lower() == "anomaly"
                if split == "train" and anomalous:
                    raise DatasetError(f"{p}: an anomalous clip in train/; training uses normal clips only")
                clips.append(DcaseClip(path=str(p.resolve()), machine=mdir.name, split=split, machine_id=m.group(2),
                                       anomalous=anomalous))
    if not clips:
        raise DatasetError(f"no DCASE clips under {root}: expected <machine>/train/normal_id_XX_*.wav and "
                           "<machine>/test/{normal,anomaly}_id_XX_*.wav")
    return clips


@dataclass(frozen=True)
class DcaseConfig:
    embedder: str = "logmel"
    pooling: str = "mu"
    scorers: tuple[str, ...] = ("mahalanobis",)
    weights: str | None = None
    embedder_options: dict = field(default_factory=dict)
    fit_per: str = "id"
    max_fpr: float = 0.1
    progress: bool = True
    plots: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        if self.fit_per not in FIT_PER:
            raise DatasetError(f"fit_per must be one of {FIT_PER}, got {self.fit_per!r}")


def embed_paths(embedder, paths: Sequence[str], pooling, *, progress: bool = True, desc: str = "embedding",
                workers: int = 2) -> np.ndarray:
    """One pooled vector per file (the whole clip), float32 [n, dim], through the ingest pipeline.

    Every clip of a DCASE evaluation must embed: a failure is a :class:`DatasetError` naming the files.
    """

    sink = ListSink()
    stats = run_pipeline([FileItem(path=str(p)) for p in paths], sample_rate=embedder.info.sample_rate,
                         mapper=EmbedMapper(embedder, pooling), sink=sink, workers=workers, progress=progress, desc=desc)
    if stats.failures:
        first = stats.failures[0]
        raise DatasetError(f"{len(stats.failures)} clips could not be embedded (e.g. {first['path']}: {first['message']}); "
                           "fix or remove them and run again")
    return np.stack([rows.embedding[0] for rows in sink.results]).astype(np.float32)


def _evaluate_groups(clips: Sequence[DcaseClip], fit_score, *, fit_per: str, max_fpr: float) -> dict:
    """The per machine type / ID loop; ``fit_score(train_idx, test_idx, name)`` -> (test scores, threshold)."""

    groups, rows, curves, fits = [], [], {}, {}
    keys = sorted({(c.machine, c.machine_id) for c in clips if c.split == "test"})
    if not keys:
        raise DatasetError("no test clips (<machine>/test/{normal,anomaly}_id_XX_*.wav)")
    for machine, mid in keys:
        train = [i for i, c in enumerate(clips) if c.split == "train" and c.machine == machine
                 and (fit_per == "machine" or c.machine_id == mid)]
        test = [i for i, c in enumerate(clips) if c.split == "test" and c.machine == machine and c.machine_id == mid]
        if len(train) < 2:
            raise DatasetError(f"{machine} id {mid}: {len(train)} normal training clips; at least 2 are needed "
                               f"in {machine}/train/normal_id_{mid}_*.wav")
        s, threshold = fit_score(train, test, f"{machine}_id_{mid}")
        y = np.array([int(clips[i].anomalous) for i in test])
        groups.append(group_metrics(machine, mid, y, s, max_fpr=max_fpr))
        curves[f"{machine} id {mid}"] = (y, s)
        fits[f"{machine}/{mid}"] = {"n_train": len(train), "threshold": threshold}
        rows += [{"machine": machine, "id": mid, "file": clips[i].path, "anomalous": int(clips[i].anomalous),
                  "score": float(sc), "verdict": "anomalous" if sc > threshold else "normal"}
                 for i, sc in zip(test, s)]
    summary = summarize(groups)
    summary["fits"] = fits
    return {"summary": summary, "rows": rows, "curves": curves, "groups": groups}


def evaluate_vectors(clips: Sequence[DcaseClip], X: np.ndarray, scorer_spec: str, *, fit_per: str = "id",
                     max_fpr: float = 0.1) -> dict:
    """Fit and score per machine type and ID on precomputed vectors (rows aligned with ``clips``)."""

    def fit_score(train, test, _name):
        scorer = make_scorer(scorer_spec).fit(X[train])
        return scorer.anomaly_score(X[test]), scorer.threshold_

    return _evaluate_groups(clips, fit_score, fit_per=fit_per, max_fpr=max_fpr)


def evaluate_vae(clips: Sequence[DcaseClip], scorer: VaeScorer, out_dir: Path, *, fit_per: str = "id",
                 max_fpr: float = 0.1, progress: bool = False) -> dict:
    """The VAE reconstruction-error scorer through the same per-group loop (one VAE per group)."""
    trained = {}

    def fit_score(train, test, name):
        s, threshold, summary = scorer.fit_score([clips[i].path for i in train], [clips[i].path for i in test],
                                                 out_dir / name, progress=progress)
        trained[name] = summary
        return s, threshold

    ev = _evaluate_groups(clips, fit_score, fit_per=fit_per, max_fpr=max_fpr)
    ev["summary"]["vae"] = trained
    return ev


def run_dcase_eval(root: str | Path, out: str | Path, config: DcaseConfig) -> dict:
    """Embed the dataset once, evaluate each scorer, write results.json, report.md, CSV and ROC PNGs."""

    t0 = time.perf_counter()
    clips = scan_dcase(root)
    specs = [VaeScorer.parse(s).spec if VaeScorer.matches(s) else ScorerConfig.parse(s).spec for s in config.scorers]
    model = make_embedder(config.embedder, weights=config.weights, options=config.embedder_options)
    pooling = PoolingSpec.parse(config.pooling)
    vector_scorers = [s for s in specs if not VaeScorer.matches(s)]
    X = embed_paths(model, [c.path for c in clips], pooling, progress=config.progress,
                    desc=f"embedding ({model.info.name})") if vector_scorers else None
    embed_s = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"dataset": str(Path(root).resolve()), "embedder": model.info.to_dict(), "embedder_options": model.options(),
               "pooling": pooling.to_dict(), "dim": int(X.shape[1]) if X is not None else None,
               "fit_per": config.fit_per, "max_fpr": config.max_fpr,
               "pauc_definition": "sklearn roc_auc_score(max_fpr) (McClish-standardised), as the DCASE baseline",
               "mahalanobis_score": "squared Mahalanobis distance",
               "clips": {"train": sum(c.split == "train" for c in clips),
                         "test_normal": sum(c.split == "test" and not c.anomalous for c in clips),
                         "test_anomalous": sum(c.split == "test" and c.anomalous for c in clips)},
               "scorers": {}, "command": config.command}
    all_rows, tables = [], {}
    for spec in specs:
        if VaeScorer.matches(spec):
            ev = evaluate_vae(clips, VaeScorer.parse(spec), out / "vae", fit_per=config.fit_per, max_fpr=config.max_fpr,
                              progress=config.progress)
        else:
            ev = evaluate_vectors(clips, X, spec, fit_per=config.fit_per, max_fpr=config.max_fpr)
        entry = dict(ev["summary"])
        if config.plots:
            png = roc_png(ev["curves"], out / f"roc_{slug(spec)}.png", title=f"{model.info.name} {pooling.name} | {spec}",
                          max_fpr=config.max_fpr)
            entry["roc_png"] = png.name
        results["scorers"][spec] = entry
        all_rows += [{"scorer": spec, **r} for r in ev["rows"]]
        tables[spec] = markdown_table(ev["groups"])
    best = max(results["scorers"], key=lambda s: results["scorers"][s]["overall"]["auc_mean"])
    results["best_scorer"] = best
    results["seconds"] = {"embedding": round(embed_s, 2), "total": round(time.perf_counter() - t0, 2)}
    write_results(out, results)
    with open(out / "anomaly_scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["scorer", "machine", "id", "file", "anomalous", "score", "verdict"])
        w.writeheader()
        w.writerows(all_rows)
    (out / "report.md").write_text(_report(results, tables))
    return results


def _report(results: dict, tables: dict[str, str]) -> str:
    e = results["embedder"]
    c = results["clips"]
    lines = [
        "# Anomaly detection (DCASE layout)",
        "",
        f"- dataset: `{results['dataset']}` ({c['train']} normal training clips; test: {c['test_normal']} normal, "
        f"{c['test_anomalous']} anomalous)",
        f"- embedder: {e['name']} {e['version']} ({e['dim']}-d frames), pooling `{results['pooling']['name']}` "
        f"-> {results['dim']}-d clip vectors (for the embedding scorers)",
        f"- one scorer fitted per {'machine type and ID' if results['fit_per'] == 'id' else 'machine type'} on normal "
        f"training clips only; pAUC at FPR <= {results['max_fpr']:g} ({results['pauc_definition']})",
        f"- embedding took {results['seconds']['embedding']} s, the whole run {results['seconds']['total']} s",
    ]
    if results.get("command"):
        lines.append(f"- command: `{results['command']}`")
    lines += ["", "## Summary (mean over all machine type / ID groups)", "",
              "| scorer | AUC mean | AUC hmean | pAUC mean | pAUC hmean |", "|---|---:|---:|---:|---:|"]
    for spec, entry in results["scorers"].items():
        o = entry["overall"]
        mark = " **(best)**" if spec == results["best_scorer"] else ""
        lines.append(f"| `{spec}`{mark} | {o['auc_mean']:.4f} | {o['auc_hmean']:.4f} | {o['pauc_mean']:.4f} | {o['pauc_hmean']:.4f} |")
    for spec, table in tables.items():
        lines += ["", f"## `{spec}`", "", table]
        png = results["scorers"][spec].get("roc_png")
        if png:
            lines += ["", f"![ROC]({png})"]
    return "\n".join(lines) + "\n"

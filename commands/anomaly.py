"""``audiosim anomaly``: fit an anomaly model on a collection, score clips, evaluate (thin layer over :mod:`audiosim.anomaly`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audiosim.anomaly.detectors import DETECTORS, load_detector, make_detector
from audiosim.anomaly.model import fit_collection_model, score_clips
from audiosim.anomaly.scorers import ScorerConfig
from audiosim.commands.common import Number, command_line, parse_options, show
from audiosim.engine.audio.decode import is_audio_path
from audiosim.engine.search.library import open_collection
from audiosim.errors import AudiosimError, InvalidOptionError
from audiosim.eval.dcase import DcaseConfig, run_dcase_eval
from audiosim.eval.dcase_layout import section_of
from audiosim.eval.detector_eval import DetectorEvalConfig, compare_eval_runs, run_detector_eval, summary_table
from audiosim.eval.novelty import DEFAULT_SCORERS, NoveltyConfig, parse_weights, run_novelty

SCORER_HELP = ("Scorer: mahalanobis, knn or lof, optionally with options as name:key=value,... "
               "(e.g. knn:k=3,metric=euclidean); the flags below override them.")


def _scorer_config(scorer, covariance, k, metric, reduce, l2, pca, percentile):
    return ScorerConfig.parse(scorer, covariance=covariance, k=k, metric=metric, reduce=reduce,
                              l2=True if l2 else None, pca=pca, percentile=percentile)


def _where(values) -> list[str]:
    """``--where label=VALUE`` options to the labels they accept."""

    out = []
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or key.strip() != "label":
            raise InvalidOptionError(f"--where {v!r}: write label=VALUE (repeat it to accept several labels)")
        out.append(value)
    return out


@click.group("anomaly")
def anomaly() -> None:
    """Anomaly scoring: fit on normal recordings, score new clips, evaluate (DCASE layout, ESC-50 novelty)."""


@anomaly.command("fit")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--where", "where", multiple=True, help="Fit only on vectors with label=VALUE (repeatable: any of the labels).")
@click.option("--scorer", default="mahalanobis", show_default=True, help=SCORER_HELP)
@click.option("--covariance", type=click.Choice(["empirical", "ledoitwolf", "oas"]), default=None,
              help="Mahalanobis covariance estimator [default: ledoitwolf].")
@click.option("-k", "k", type=int, default=None, help="Neighbours for knn/lof [default: 5].")
@click.option("--metric", type=click.Choice(["cosine", "euclidean"]), default=None, help="knn/lof distance [default: cosine].")
@click.option("--reduce", type=click.Choice(["mean", "kth"]), default=None, help="knn: mean or k-th neighbour distance [default: mean].")
@click.option("--l2", is_flag=True, help="L2-normalise vectors before fitting/scoring.")
@click.option("--pca", type=int, default=None, help="Project on this many principal components of the normal vectors first.")
@click.option("--percentile", type=Number(min=0, max=100), default=None, help="Threshold = this percentile of the training scores [default: 99].")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted model's summary as JSON.")
def fit_cmd(collection_dir, where, scorer, covariance, k, metric, reduce, l2, pca, percentile, as_json):
    """Fit an anomaly model on a collection's (normal) vectors and save it in DIR/anomaly/."""

    coll = open_collection(collection_dir)
    s = fit_collection_model(coll, _scorer_config(scorer, covariance, k, metric, reduce, l2, pca, percentile),
                             labels=_where(where))
    for w in s.warnings:
        click.echo(f"warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    click.echo(f"fitted {s.scorer} on {s.n_train} vectors of {show(coll.root)}"
               + (f" (label in {', '.join(s.labels)})" if s.labels else ""))
    click.echo(f"threshold {s.threshold:.6g} = percentile {s.percentile:g} of the training scores "
               f"(median {s.train_score_median:.6g}); saved to {show(s.model)}")


@anomaly.command("score")
@click.argument("clips", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Score with the collection's anomaly model (`anomaly fit`).")
@click.option("--model", "model_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Score with a detector saved by `anomaly fit-detector` instead.")
@click.option("--label", default=None, help="--model: the clips' machine ID/section (else read from DCASE file names).")
@click.option("--device", default=None, help="--model: cpu (default) or cuda.")
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def score_cmd(clips, collection_dir, model_dir, label, device, weights, as_json):
    """Score CLIPs against the collection's anomaly model or a saved detector: score, threshold, verdict.

    A clip's score is the highest score of its vectors (one per segment in a segmented collection);
    a detector's is the mean of its frame scores.
    """

    if (collection_dir is None) == (model_dir is None):
        raise InvalidOptionError("give either --collection DIR (a collection's anomaly model) or --model DIR (a detector)")
    if model_dir is not None:
        _score_with_detector(clips, model_dir, label, device, as_json)
        return
    report = score_clips(open_collection(collection_dir), clips, weights=weights)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        if report.model_stale:
            click.echo("note: the collection changed since the model was fitted; refit with `audiosim anomaly fit`", err=True)
        click.echo(f"scorer {report.scorer}, threshold {report.threshold:.6g}")
        click.echo(f"{'score':>12}  {'verdict':<9}  clip")
        for r in report.results:
            if r.error is not None:
                click.echo(f"{'-':>12}  {'error':<9}  {show(r.clip)}: {show(r.message)}")
            else:
                where = f" @{r.offset_s:.1f}s" if r.segments else ""
                click.echo(f"{r.score:>12.6g}  {r.verdict:<9}  {show(r.clip)}{where}")
    if report.failed:
        sys.exit(2)


def _score_with_detector(clips, model_dir, label, device, as_json):
    det = load_detector(model_dir, device=device)
    labels = None
    if det.needs_labels:
        labels = [label or section_of(c) for c in clips]
        if None in labels:
            raise InvalidOptionError(f"the {det.kind} detector needs each clip's machine ID/section: pass --label "
                                f"(one of {', '.join(det.classes_)}) or use DCASE file names")
    out = []
    for clip, lab in zip(clips, labels or [None] * len(clips)):
        try:
            r = det.score([clip], labels=[lab] if lab is not None else None)[0]
            out.append({"clip": clip, "score": r.score, "threshold": det.threshold_, "frames": len(r.frames),
                        "verdict": "anomalous" if r.score > det.threshold_ else "normal"})
        except AudiosimError as e:
            out.append({"clip": clip, "error": type(e).__name__, "message": str(e)})
    if as_json:
        click.echo(json.dumps({"detector": det.spec, "threshold": det.threshold_, "results": out}, indent=2))
    else:
        click.echo(f"detector {det.spec}, threshold {det.threshold_:.6g} ({det.threshold_fit_.get('method')} fit, "
                   f"percentile {det.options['percentile']:g} of the training scores)")
        click.echo(f"{'score':>12}  {'verdict':<9}  clip")
        for r in out:
            if "error" in r:
                click.echo(f"{'-':>12}  {'error':<9}  {show(r['clip'])}: {show(r['message'])}")
            else:
                click.echo(f"{r['score']:>12.6g}  {r['verdict']:<9}  {show(r['clip'])}")
    if any("error" in r for r in out):
        sys.exit(2)


@anomaly.command("fit-detector")
@click.argument("clips", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--detector", "spec", required=True, help=f"Detector spec: {', '.join(DETECTORS)} with options, e.g. ae:epochs=30.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to save the detector in.")
@click.option("--label", default=None, help="Classifier detectors: the clips' ID/section (else read from DCASE file names).")
@click.option("--tune", type=int, default=0, show_default=True, help="Try N random settings on a validation split of the clips.")
@click.option("--device", default=None, help="cpu (default) or cuda.")
def fit_detector_cmd(clips, spec, out_dir, label, tune, device):
    """Fit a detector on normal CLIPs (files or folders of audio) and save it with its threshold."""

    paths = []
    for c in clips:
        p = Path(c)
        paths += sorted(str(f) for f in p.rglob("*") if f.is_file() and is_audio_path(f)) if p.is_dir() else [str(p)]
    det = make_detector(spec, device=device)
    labels = [label or section_of(p) for p in paths] if det.needs_labels else None
    if labels is not None and None in labels:
        raise InvalidOptionError(f"the {det.kind} detector needs each clip's machine ID/section: use DCASE file names")
    det.fit(paths, labels=labels, tune=tune)
    det.save(out_dir)
    click.echo(f"fitted {det.spec} on {det.n_train_} clips in {det.fit_seconds_:.1f} s; threshold {det.threshold_:.6g} "
               f"({det.threshold_fit_.get('method')} fit at percentile {det.options['percentile']:g}); saved to {show(out_dir)}")


@anomaly.command("compare")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(run_a, run_b, as_json):
    """Compare two `anomaly eval --detector` runs: DeLong tests per machine type and section, Holm-corrected."""

    res = compare_eval_runs(run_a, run_b)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{'A':<28} {'B':<28} {'group':<14} {'AUC A':>7} {'AUC B':>7} {'p':>9} {'p Holm':>9}")
    for t in res["tests"]:
        click.echo(f"{t['a']:<28} {t['b']:<28} {t['machine'] + '/' + t['section']:<14} {t['auc_a']:>7.4f} "
                   f"{t['auc_b']:>7.4f} {t['p']:>9.3g} {t['p_holm']:>9.3g}")


@anomaly.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--detector", "detectors", multiple=True,
              help=f"Trained detector, repeatable ({', '.join(DETECTORS)}; options as ae:epochs=30). Reads the DCASE "
                   "2020 and 2021-2024 layouts; replaces --scorer.")
@click.option("--year", type=click.IntRange(2020, 2024), default=None, help="--detector: official score of this year "
              "[default: guessed from the layout].")
@click.option("--tune", type=int, default=0, help="--detector: random-search N settings per fit (validation split of normal clips).")
@click.option("--bootstrap", "n_boot", type=int, default=200, show_default=True, help="--detector: bootstrap resamples.")
@click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False), help="--detector: feature cache folder.")
@click.option("--embedder", default="logmel", show_default=True, help="Registered embedder (see `audiosim embedders`).")
@click.option("--scorer", "scorers", multiple=True, default=("mahalanobis",), show_default=True,
              help="Scorer spec, repeatable (e.g. mahalanobis:covariance=oas, knn:k=3,metric=cosine, lof:k=10).")
@click.option("--pooling", default="mu", show_default=True, help="Frame pooling (e.g. mu, mu+sigma, l2mean).")
@click.option("--weights", default=None, help="Model weights: file, directory or handle.")
@click.option("--device", default=None, help="Device for torch embedders (cpu, cuda).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Embedder option, repeatable.")
@click.option("--fit-per", type=click.Choice(["id", "machine"]), default="id", show_default=True,
              help="One model per machine type and ID, or per machine type.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for results.json, report.md, PNGs.")
@click.option("--no-plots", is_flag=True, help="Skip the ROC PNGs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json.")
def eval_cmd(dataset_dir, detectors, year, tune, n_boot, cache_dir, embedder, scorers, pooling, weights, device, options,
             fit_per, out_dir, no_plots, quiet, as_json):
    """Evaluate anomaly scoring on a DCASE-layout dataset (<machine>/train, <machine>/test).

    With --detector: trained detectors, AUC/pAUC per machine type, section and domain, the year's official
    score, bootstrap intervals and DeLong tests. Else scorers: any vector scorer spec, or
    vae[:epochs=30,latent=32,channels=32-64-128-256] (one GLU-ConvVAE per machine ID).
    """

    if detectors:
        config = DetectorEvalConfig(detectors=tuple(detectors), year=year, device=device, tune=tune, n_boot=n_boot,
                                    plots=not no_plots, cache_dir=cache_dir, progress=not quiet, command=command_line())
        results = run_detector_eval(dataset_dir, out_dir, config)
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        click.echo(summary_table(results))
        click.echo(f"wrote {out_dir}/results.json, report.md, scores.csv, frame_scores.npz and PNGs")
        return
    opts = parse_options(options)
    if device is not None:
        opts["device"] = device
    config = DcaseConfig(embedder=embedder, pooling=pooling, scorers=tuple(scorers), weights=weights, embedder_options=opts,
                         fit_per=fit_per, progress=not quiet, plots=not no_plots, command=command_line())
    results = run_dcase_eval(dataset_dir, out_dir, config)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"{'scorer':<48} {'AUC':>7} {'pAUC':>7}  (mean over {results['scorers'][results['best_scorer']]['overall']['n_groups']} machine/ID groups)")
    for spec, entry in results["scorers"].items():
        o = entry["overall"]
        click.echo(f"{spec:<48} {o['auc_mean']:>7.4f} {o['pauc_mean']:>7.4f}")
    click.echo(f"wrote {out_dir}/results.json, report.md, anomaly_scores.csv")


@anomaly.command("novelty")
@click.option("--esc50", default=None, type=click.Path(file_okay=False), help="ESC-50 root (else $ESC50_ROOT).")
@click.option("--embedder", "embedders", multiple=True, default=("yamnet", "logmel"), show_default=True,
              help="Registered embedder, repeatable.")
@click.option("--pooling", "poolings", multiple=True, default=("mu", "l2mean"), show_default=True,
              help="Frame pooling, repeatable.")
@click.option("--scorer", "scorers", multiple=True, default=None,
              help="Scorer spec, repeatable [default: Mahalanobis (3 covariances; Ledoit-Wolf after L2), kNN (cosine k=1, 5, 20; "
                   "euclidean k=5), LOF (k=20)].")
@click.option("--weights", multiple=True, help="Weights: PATH (one embedder) or NAME=PATH, repeatable.")
@click.option("--cache", default=None, type=click.Path(file_okay=False), help="Benchmark embedding cache folder.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for results.json and report.md.")
@click.option("--quiet", is_flag=True)
def novelty_cmd(esc50, embedders, poolings, scorers, weights, cache, out_dir, quiet):
    """ESC-50 novelty benchmark: per class, fit on folds 1-4, score fold 5; mean AUC/pAUC per embedder x scorer."""

    config = NoveltyConfig(out=out_dir, embedders=tuple(embedders), poolings=tuple(poolings),
                           scorers=tuple(scorers) if scorers else DEFAULT_SCORERS,
                           weights=parse_weights(weights, embedders), esc50=esc50, cache=cache, progress=not quiet,
                           command=command_line())
    results = run_novelty(config)
    for e, b in results["best"].items():
        click.echo(f"best for {e}: {b['pooling']} | {b['scorer']}: AUC {b['auc_mean']:.4f}, pAUC {b['pauc_mean']:.4f}")
    click.echo(f"wrote {out_dir}/results.json and report.md")

"""``audiosim anomaly``: fit an anomaly model on a collection, score clips, evaluate (thin layer over :mod:`audiosim.anomaly`)."""

from __future__ import annotations

import json
import sys

import click

from audiosim.commands.common import command_line, show

SCORER_HELP = ("Scorer: mahalanobis, knn or lof, optionally with options as name:key=value,... "
               "(e.g. knn:k=3,metric=euclidean); the flags below override them.")


def _scorer_config(scorer, covariance, k, metric, reduce, l2, pca, percentile):
    from audiosim.anomaly.scorers import ScorerConfig

    return ScorerConfig.parse(scorer, covariance=covariance, k=k, metric=metric, reduce=reduce,
                              l2=True if l2 else None, pca=pca, percentile=percentile)


def _where(values) -> list[str]:
    """``--where label=VALUE`` options to the labels they accept."""
    from audiosim.errors import AudiosimError

    out = []
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or key.strip() != "label":
            raise AudiosimError(f"--where {v!r}: write label=VALUE (repeat it to accept several labels)")
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
@click.option("--percentile", type=float, default=None, help="Threshold = this percentile of the training scores [default: 99].")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted model's summary as JSON.")
def fit_cmd(collection_dir, where, scorer, covariance, k, metric, reduce, l2, pca, percentile, as_json):
    """Fit an anomaly model on a collection's (normal) vectors and save it in DIR/anomaly/."""
    from audiosim.anomaly.model import fit_collection_model
    from audiosim.engine.library import open_collection

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
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def score_cmd(clips, collection_dir, weights, as_json):
    """Score CLIPs against the collection's anomaly model: score, threshold, verdict.

    A clip's score is the highest score of its vectors (one per segment in a segmented collection).
    """
    from audiosim.anomaly.model import score_clips
    from audiosim.engine.library import open_collection

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


@anomaly.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
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
def eval_cmd(dataset_dir, embedder, scorers, pooling, weights, device, options, fit_per, out_dir, no_plots, quiet, as_json):
    """Evaluate anomaly scoring on a DCASE-layout dataset (<machine>/train, <machine>/test).

    Scorers: any vector scorer spec, or vae[:epochs=30,latent=32,channels=32-64-128-256] to train one
    GLU-ConvVAE per machine ID and score by reconstruction error (needs torch).
    """
    from audiosim.commands.common import parse_options
    from audiosim.eval.dcase import DcaseConfig, run_dcase_eval

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
    from audiosim.eval.novelty import DEFAULT_SCORERS, NoveltyConfig, parse_weights, run_novelty

    config = NoveltyConfig(out=out_dir, embedders=tuple(embedders), poolings=tuple(poolings),
                           scorers=tuple(scorers) if scorers else DEFAULT_SCORERS,
                           weights=parse_weights(weights, embedders), esc50=esc50, cache=cache, progress=not quiet,
                           command=command_line())
    results = run_novelty(config)
    for e, b in results["best"].items():
        click.echo(f"best for {e}: {b['pooling']} | {b['scorer']}: AUC {b['auc_mean']:.4f}, pAUC {b['pauc_mean']:.4f}")
    click.echo(f"wrote {out_dir}/results.json and report.md")

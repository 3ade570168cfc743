"""``audiosim anomaly``: fit an anomaly model on a collection's normal vectors, score clips, evaluate.

The model lives inside the collection (``DIR/anomaly/``: ``scorer.json`` + ``scorer.npz``, see
:mod:`audiosim.anomaly.scorers`). It is fitted on the vectors **as stored** (the collection's
embedder and pooling, without the optional index post-processing), and ``score`` embeds clips
the same way (same embedder, weights, pooling and segment length), so both sides live in one space.
"""

from __future__ import annotations

import json
import sys

import click

MODEL_DIR = "anomaly"
SCORER_HELP = ("Scorer: mahalanobis, knn or lof, optionally with options as name:key=value,... "
               "(e.g. knn:k=3,metric=euclidean); the flags below override them.")


def _scorer_config(scorer, covariance, k, metric, reduce, l2, pca, percentile):
    from audiosim.anomaly.scorers import ScorerConfig

    return ScorerConfig.parse(scorer, covariance=covariance, k=k, metric=metric, reduce=reduce,
                              l2=True if l2 else None, pca=pca, percentile=percentile)


def _where(values) -> dict[str, set[str]]:
    from audiosim.errors import AudiosimError

    out: dict[str, set[str]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or key.strip() != "label":
            raise AudiosimError(f"--where {v!r}: write label=VALUE (repeat it to accept several labels)")
        out.setdefault("label", set()).add(value)
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
    import numpy as np

    from audiosim.engine.store import Collection
    from audiosim.errors import AudiosimError
    from audiosim.anomaly.scorers import make_scorer

    config = _scorer_config(scorer, covariance, k, metric, reduce, l2, pca, percentile)
    coll = Collection.open(collection_dir)
    ids, X = coll.embeddings()
    filters = _where(where)
    if filters:
        labels = {r["id"]: r["label"] for r in coll.records(("label",))}
        keep = np.array([labels[int(i)] in filters["label"] for i in ids], dtype=bool)
        ids, X = ids[keep], X[keep]
    if len(ids) < 2:
        have = sorted({r["label"] for r in coll.records(("label",)) if r["label"] is not None})
        raise AudiosimError(f"{len(ids)} vectors match {list(where) or 'the collection'}; at least 2 normal vectors are "
                            f"needed (labels here: {', '.join(have) or 'none'})")
    model = make_scorer(config).fit(X)
    extra = {"collection_revision": coll.manifest["revision"], "where": {k: sorted(v) for k, v in filters.items()},
             "n_vectors": int(len(ids)), "space": "stored", "embedder": coll.embedder, "pooling": coll.pooling,
             "segment_s": coll.manifest.get("segment_s")}
    model.save(coll.root / MODEL_DIR, extra=extra)
    summary = {"collection": str(coll.root), "model": str(coll.root / MODEL_DIR), "scorer": config.spec,
               "n_train": int(len(ids)), "percentile": config.percentile, "threshold": model.threshold_,
               "train_score_median": float(np.median(model.train_scores_)), "where": extra["where"]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"fitted {config.spec} on {len(ids)} vectors of {coll.root}"
               + (f" (label in {', '.join(sorted(filters['label']))})" if filters else ""))
    click.echo(f"threshold {model.threshold_:.6g} = percentile {config.percentile:g} of the training scores "
               f"(median {summary['train_score_median']:.6g}); saved to {coll.root / MODEL_DIR}")


@anomaly.command("score")
@click.argument("clips", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def score_cmd(clips, collection_dir, weights, as_json):
    """Score CLIPs against the collection's anomaly model: score, threshold, verdict.

    A clip's score is the highest score of its vectors (one per segment in a segmented collection).
    """
    import numpy as np

    from audiosim.engine.pooling import PoolingSpec
    from audiosim.engine.search import embed_file, embedder_for
    from audiosim.engine.store import Collection
    from audiosim.errors import AudiosimError, VectorIndexError
    from audiosim.anomaly.scorers import load_scorer

    coll = Collection.open(collection_dir)
    if not (coll.root / MODEL_DIR).is_dir():
        raise VectorIndexError(f"{coll.root} has no anomaly model; fit one with `audiosim anomaly fit --collection {collection_dir}`")
    model, meta = load_scorer(coll.root / MODEL_DIR)
    extra = meta.get("extra", {})
    if extra.get("pooling") not in (None, coll.pooling) or extra.get("embedder", {}).get("weights_sha256") != coll.embedder.get("weights_sha256"):
        raise VectorIndexError(f"the anomaly model in {coll.root / MODEL_DIR} was fitted on another embedder or pooling; "
                               "fit it again with `audiosim anomaly fit`")
    stale = extra.get("collection_revision") != coll.manifest["revision"]
    embedder = embedder_for(coll, weights=weights)
    pooling = PoolingSpec.from_dict(coll.pooling)
    results, failed = [], 0
    for clip in clips:
        try:
            segs = embed_file(embedder, clip, pooling, segment_s=coll.manifest.get("segment_s"))
        except AudiosimError as e:
            failed += 1
            results.append({"clip": clip, "error": type(e).__name__, "message": str(e)})
            continue
        scores = model.anomaly_score(np.stack([v for _, _, v in segs]))
        top = int(np.argmax(scores))
        entry = {"clip": clip, "score": float(scores[top]), "threshold": model.threshold_,
                 "verdict": "anomalous" if scores[top] > model.threshold_ else "normal"}
        if len(segs) > 1:
            entry["offset_s"] = float(segs[top][0])
            entry["segments"] = [{"offset_s": float(o), "duration_s": float(d), "score": float(s)}
                                 for (o, d, _), s in zip(segs, scores)]
        results.append(entry)
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "scorer": meta["spec"], "threshold": model.threshold_,
                               "model_stale": stale, "results": results}, indent=2))
    else:
        if stale:
            click.echo("note: the collection changed since the model was fitted; refit with `audiosim anomaly fit`", err=True)
        click.echo(f"scorer {meta['spec']}, threshold {model.threshold_:.6g}")
        click.echo(f"{'score':>12}  {'verdict':<9}  clip")
        for r in results:
            if "error" in r:
                click.echo(f"{'-':>12}  {'error':<9}  {r['clip']}: {r['message']}")
            else:
                where = f" @{r['offset_s']:.1f}s" if r.get("offset_s") else ""
                click.echo(f"{r['score']:>12.6g}  {r['verdict']:<9}  {r['clip']}{where}")
    if failed:
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
    from audiosim.cli import embedder_options
    from audiosim.eval.dcase import DcaseConfig, run_dcase_eval

    opts = embedder_options(None, device, options)
    config = DcaseConfig(embedder=embedder, pooling=pooling, scorers=tuple(scorers), weights=weights, embedder_options=opts,
                         fit_per=fit_per, progress=not quiet, plots=not no_plots, command=" ".join(["audiosim"] + sys.argv[1:]))
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
                           command=" ".join(["audiosim"] + sys.argv[1:]))
    results = run_novelty(config)
    for e, b in results["best"].items():
        click.echo(f"best for {e}: {b['pooling']} | {b['scorer']}: AUC {b['auc_mean']:.4f}, pAUC {b['pauc_mean']:.4f}")
    click.echo(f"wrote {out_dir}/results.json and report.md")

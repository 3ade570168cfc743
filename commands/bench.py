"""``audiosim bench`` (the ESC-50 retrieval benchmark) and ``audiosim compare`` (paired tests between runs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from audiosim.commands.common import command_line, parse_options
from audiosim.eval.bench import BenchConfig, run_benchmark
from audiosim.eval.compare import compare_runs, format_comparison, load_run
from audiosim.eval.esc50_cache import bench_cache_root
from audiosim.eval.tag_bench import run_tag_benchmark

POSTPROCESS_HELP = ("Label-free post-processing fitted on the collection (repeatable; 'none' = raw): steps joined by '+': "
                    "center, whiten[:DIM[:BETA]], pca:DIM, power[:ALPHA], l2, e.g. power+center+whiten:256.")


def _summary_lines(results: dict) -> list[str]:
    lines = []
    for name, v in results["variants"].items():
        r = v["retrieval"]
        for protocol in r:
            for metric in r[protocol]:
                cells = []
                for lvl in r[protocol][metric]:
                    b = r[protocol][metric][lvl]
                    m, ci = b["metrics"], b["ci"].get("accuracy")
                    acc = f"{m['accuracy']:.4f}" + (f" [{ci[0]:.3f},{ci[1]:.3f}]" if ci else "")
                    k5 = f" MAP@5 {m['map@5']:.4f} Acc@5 {m['acc@5']:.4f}" if "map@5" in m else ""
                    cells.append(f"{lvl} 1-NN acc {acc}{k5} (random {b['random']['accuracy']:.4f})")
                lines.append(f"{name:<40} {protocol:<6} {metric:<9} " + "; ".join(cells))
        for lvl, probes in v.get("probes", {}).items():
            for model, p in probes.items():
                lines.append(f"{name:<40} probe  {model:<9} {lvl} accuracy {p['mean']:.4f} ± {p['std']:.4f} (official 5 folds)")
    return lines


@click.command("bench")
@click.option("--embedder", default="yamnet", show_default=True, help="Registered embedder (see `audiosim embedders`).")
@click.option("--pooling", "poolings", multiple=True, default=("mu",), show_default=True,
              help="Pooling (repeatable); 'all' sweeps the seven mu/sigma/delta combinations.")
@click.option("--silence", type=click.Choice(["skip", "keep", "both"]), default="skip", show_default=True,
              help="Leave the frames that are digital silence out of pooling (skip, as `audiosim index` does by default), "
                   "keep them (--keep-silence), or evaluate both.")
@click.option("--postprocess", "postprocess", multiple=True, help=POSTPROCESS_HELP)
@click.option("--weights", default=None, help="Model weights (else $AUDIOSIM_MODELS, cache, download).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Embedder option, repeatable (e.g. features=mu, variant=Cnn14_16k).")
@click.option("--esc50", default=None, type=click.Path(file_okay=False), help="ESC-50 root (else $ESC50_ROOT).")
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Where the embedded ESC-50 collections are cached [default: $AUDIOSIM_CACHE/bench, else "
                   "~/.cache/audiosim/bench]; printed at the start of every run.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for results.json, report.md, figures.")
@click.option("--protocol", "protocols", multiple=True, type=click.Choice(["loo", "xfold"]), default=("loo", "xfold"),
              show_default=True, help="Retrieval protocol(s).")
@click.option("--metric", "metrics", multiple=True, type=click.Choice(["cosine", "euclidean"]), default=("cosine", "euclidean"),
              show_default=True, help="Distance(s).")
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, help="Bootstrap resamples for the 95% CIs (0 = none).")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap and the probes.")
@click.option("--probes/--no-probes", default=True, show_default=True, help="Linear probes (logistic regression, linear SVM).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Confusion-matrix and PCA figures of the best variant.")
@click.option("--threads", default=1, show_default=True,
              help="BLAS threads for the metrics, probes and post-processing (0 = the libraries' default); numpy and "
                   "scipy each bundle OpenBLAS and more threads can oversubscribe small machines.")
@click.option("--tags", "tag_search", is_flag=True,
              help="Instead: tag search -- rank the clips by the AudioSet class mapped to each ESC-50 category "
                   "(eval/esc50_audioset.csv) and report precision@10 (embedders with a classifier head).")
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the summary.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(embedder, poolings, silence, postprocess, weights, options, esc50, cache, out, protocols, metrics, n_boot, seed, probes, plots,
              threads, tag_search, as_json, quiet):
    """Benchmark an embedder on ESC-50: 1-NN accuracy, MAP@K, Acc@K, probes, under loo and xfold (or tag search)."""

    if tag_search:
        _tag_bench(embedder=embedder, weights=weights, options=parse_options(options), esc50=esc50, cache=cache, out=out,
                   as_json=as_json, quiet=quiet)
        return
    config = BenchConfig(embedder=embedder, out=out, poolings=tuple(poolings), postprocess=tuple(postprocess) or (None,),
                         skip_silence={"skip": (True,), "keep": (False,), "both": (True, False)}[silence],
                         weights=weights, embedder_options=parse_options(options), esc50=esc50, cache=cache,
                         protocols=tuple(protocols), metrics=tuple(metrics),
                         n_boot=n_boot, seed=seed, probes=probes, plots=plots, progress=not quiet,
                         command=command_line(), threads=threads or None)

    if not (quiet or as_json):
        click.echo(f"embedding cache: {bench_cache_root(cache)} (--cache DIR to put it elsewhere)", err=True)
    results = run_benchmark(config)
    if as_json:
        click.echo((Path(out) / "results.json").read_text())
        return
    for line in _summary_lines(results):
        click.echo(line)
    click.echo(f"best variant (xfold, cosine, sub-class 1-NN accuracy): {results['best_variant']}")
    click.echo(f"wrote {out}/results.json, report.md, per_query.npz" + (", figures" if plots else "")
               + f" in {results['meta']['total_seconds']:.1f} s (embedding {results['meta']['embed_seconds']:.1f} s)")


def _tag_bench(*, embedder, weights, options, esc50, cache, out, as_json, quiet) -> None:

    report = run_tag_benchmark(embedder=embedder, weights=weights, embedder_options=options, esc50=esc50, cache=cache,
                               out=out, progress=not (quiet or as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    stored, full = report["stored_top_n"], report["full_scores"]
    for category, p in sorted(stored["per_category"].items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"{category:<20} precision@{stored['k']} {p:.1f}")
    click.echo(f"unmapped (no clear AudioSet class): {', '.join(stored['unmapped']) or 'none'}")
    click.echo(f"tag search precision@{stored['k']} over {stored['n_mapped']} mapped ESC-50 classes: "
               f"{stored['mean_precision_at_k']:.3f} from each clip's top {stored['top_n']} stored tags "
               f"({full['mean_precision_at_k']:.3f} from all class scores); wrote {out}/results.json")


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--protocol", "protocols", multiple=True, type=click.Choice(["loo", "xfold"]), default=("loo", "xfold"),
              show_default=True, help="Protocol(s) to compare under.")
@click.option("--metric", default="cosine", type=click.Choice(["cosine", "euclidean"]), show_default=True)
@click.option("--labels", "level", default="sub", type=click.Choice(["sub", "super"]), show_default=True)
@click.option("-k", "ks", multiple=True, type=int, default=(5, 10), show_default=True, help="K for the MAP@K bootstrap.")
@click.option("--bootstrap", "n_boot", default=10000, show_default=True, help="Paired bootstrap resamples.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(runs, protocols, metric, level, ks, n_boot, seed, as_json):
    """Compare benchmark runs (RUN = an `audiosim bench --out` folder, or FOLDER::VARIANT): McNemar, Holm, bootstrap."""


    loaded = [load_run(r) for r in runs]
    results = [compare_runs(loaded, protocol=p, metric=metric, level=level, ks=ks, n_boot=n_boot, seed=seed)
               for p in protocols]
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo("\n\n".join(format_comparison(r) for r in results))

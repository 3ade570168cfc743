"""``audiosim index``: bring a collection up to date with a folder (a thin layer over :func:`audiosim.index_folder`)."""

from __future__ import annotations

import json
import sys

import click

from audiosim.commands.common import POOLING_HELP, WAIT, WAIT_HELP, Number, parse_options, plural, show
from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.ingest.options import IndexOptions, parse_processes
from audiosim.errors import IngestFailuresError, InvalidOptionError
from audiosim.indexes.auto import DEFAULT_MEMORY_BUDGET, DEFAULT_TARGET_RECALL, parse_bytes

INDEX_KINDS = ("flat", "hnsw", "hnswlib", "ivf", "sq8", "hnswsq", "hnswpca", "ivfsq8", "ivfpq", "auto")  # audiosim.indexes.kinds.kind_names()


@click.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--collection", "collection_dir", required=True, type=click.Path(file_okay=False), help="Collection directory (created if missing).")
@click.option("--embedder", default=None, help="Registered embedder (see `audiosim embedders`) [new collection: yamnet; else the collection's].")
@click.option("--pooling", default=None, help=POOLING_HELP + " [new collection: mu; else the collection's]")
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "l2"]), default=None,
              help="Distance [new collection: cosine; else the collection's]; l2 means euclidean.")
@click.option("--weights", default=None, help="Model weights: file, directory or handle (else $AUDIOSIM_MODELS, cache, download).")
@click.option("--device", default=None, help="Device for torch embedders (cpu, cuda).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Embedder option, repeatable (e.g. variant=Cnn14_16k, window_s=2, postprocess=pca8).")
@click.option("--memory-budget", default=None, metavar="SIZE",
              help="With --index-kind auto: the most memory the index may hold, e.g. 512M or 4G [default: 2G].")
@click.option("--target-recall", default=None, type=Number(min=0, max=1, min_open=True),
              help="With --index-kind auto: the recall@10 its search setting is tuned to reach [default: 0.95].")
@click.option("--index-kind", default=None, type=click.Choice(INDEX_KINDS),
              help="FAISS index: flat (exact, the default), hnsw, hnswlib, ivf, sq8, hnswsq, hnswpca (HNSW over PCA-reduced "
                   "vectors, re-ranked exactly), ivfsq8, ivfpq, or auto (chosen "
                   "from the collection's size and --memory-budget, tuned to --target-recall) [default: the collection's].")
@click.option("--postprocess", default=None, metavar="SPEC",
              help="Label-free post-processing fitted on the collection's vectors, e.g. power+center+whiten:256 ('none' removes it).")
@click.option("--prune", is_flag=True, help="Drop vectors of files under FOLDER that no longer exist.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Decoding threads (when this process embeds) and hashing threads.")
@click.option("--processes", default="auto", show_default=True, metavar="auto|N",
              help="Worker processes that decode and embed, each loading the model once; 0 embeds in this process. "
                   "auto: one per core for CPU embedders when at least 128 files are new or changed.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Embed on this machine, or on a Ray cluster (pip install 'audiosim[ray]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray cluster for --engine ray (auto, HOST:PORT, ray://HOST:10001) [default: a local Ray].")
@click.option("--num-actors", default=None, type=click.IntRange(min=1),
              help="Embedding actors for --engine ray, each loading the model once [default: one per cluster CPU].")
@click.option("--gpus-per-actor", default=0.0, show_default=True, type=Number(min=0),
              help="GPUs each Ray actor holds (e.g. 1, or 0.5 to share one); use with --device cuda.")
@click.option("--no-compact", "no_compact", is_flag=True,
              help="Do not merge small parts at the end of the run (see `audiosim compact`).")
@click.option("--segment-hop", "segment_hop_s", type=Number(min=0, min_open=True), default=None,
              help="Start a segment every SECONDS (at most --segment; overlapping segments) [default: --segment].")
@click.option("--max-duration", "max_duration_s", type=Number(min=0), default=6 * 3600.0, show_default=True,
              help="Refuse a file whose header claims a longer recording, before decoding it (seconds; 0 = no limit).")
@click.option("--skip-silence/--keep-silence", "skip_silence", default=None,
              help="Pool only the frames that are not digital silence (padding of short clips, gaps in long recordings) "
                   "and stores no all-silent segment; --keep-silence pools every frame as before [default: the "
                   "collection's (collections made before this default keep silence); new collections leave it out].")
@click.option("--segment", "segment_s", type=Number(min=0, min_open=True), default=None,
              help="One vector per SEGMENT seconds instead of per file [default: the collection's].")
@click.option("--label-from", type=click.Choice(["parent", "none"]), default=None,
              help="Label each file by its parent folder (below FOLDER), or leave labels empty [default: what the "
                   "collection recorded for FOLDER, else parent].")
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV giving labels: a path/filename/file column matched by file name without extension. The "
                   "collection remembers it (and --label-column) for FOLDER and labels new files by it in later runs.")
@click.option("--label-column", default="label", show_default=True, help="Label column of --labels.")
@click.option("--include-deleted", is_flag=True,
              help="Embed again the files of FOLDER that `audiosim delete` removed (otherwise they stay out; "
                   "see also `audiosim undelete`).")
@click.option("--strict", is_flag=True, help="Exit with code 1 when any file failed (the others are still committed).")
@click.option("--flush-every", default=64, show_default=True, type=click.IntRange(min=1),
              help="Files per committed part (resume granularity).")
@click.option("--nan-policy", type=click.Choice(["error", "zero"]), default="error", show_default=True,
              help="Files with NaN/infinite samples: report them as failures, or replace those samples by zeros.")
@click.option("--wait", default=None, type=WAIT, help=WAIT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def index_cmd(folder, collection_dir, embedder, pooling, metric, weights, device, options, memory_budget, target_recall,
              index_kind, postprocess, prune,
              workers, processes, engine, ray_address, num_actors, gpus_per_actor, no_compact, segment_s, label_from,
              labels_csv, label_column, flush_every, nan_policy, wait, as_json, quiet, segment_hop_s, max_duration_s,
              skip_silence, include_deleted, strict):
    """Embed every audio file under FOLDER into a collection and (re)build its index."""

    opts = IndexOptions(embedder=embedder, pooling=pooling, metric=metric, segment_s=segment_s,
                        index_params=_auto_params(index_kind, memory_budget, target_recall),
                        segment_hop_s=segment_hop_s, skip_silence=skip_silence, max_duration_s=max_duration_s or None,
                        labels=labels_csv, label_column=label_column, label_from=label_from, prune=prune, weights=weights,
                        device=device, embedder_options=parse_options(options), index_kind=index_kind,
                        postprocess=postprocess, workers=workers, processes=parse_processes(processes, option="--processes"),
                        engine=engine, ray_address=ray_address, num_actors=num_actors, gpus_per_actor=gpus_per_actor,
                        compact=not no_compact, flush_every=flush_every, nan_policy=nan_policy,
                        progress=not (quiet or as_json), wait=wait, include_deleted=include_deleted, strict=strict)
    try:
        report, failed = index_folder(folder, collection_dir, options=opts), None
    except IngestFailuresError as e:  # --strict: the run is committed; say so, then exit 1
        report, failed = e.report, e
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in summary_lines(report):
            click.echo(line)
    if failed is not None:
        click.secho(f"error: {show(failed)}", fg="red", err=True)
        sys.exit(1)


def _auto_params(kind, memory_budget, target_recall) -> dict | None:
    """``--memory-budget`` / ``--target-recall`` as the index parameters of ``--index-kind auto``."""

    if memory_budget is None and target_recall is None:
        return None
    if kind != "auto":
        raise InvalidOptionError("--memory-budget and --target-recall tune --index-kind auto; add --index-kind auto")

    return {"memory_budget": parse_bytes(memory_budget if memory_budget is not None else DEFAULT_MEMORY_BUDGET),
            "target_recall": DEFAULT_TARGET_RECALL if target_recall is None else float(target_recall)}


def summary_lines(report) -> list[str]:
    """The human-readable run summary."""
    lines = []
    if report.labels is not None:
        lines.append(show(report.labels.summary()))
    deleted = ""
    if report.deleted_skipped:
        deleted = (f", {report.deleted_skipped} deleted (left out: `audiosim undelete` or --include-deleted embeds "
                   f"{'it' if report.deleted_skipped == 1 else 'them'} again)")
    elif report.undeleted:
        deleted = f", {report.undeleted} deleted embedded again"
    lines.append(f"scanned {plural(report.scanned, 'file')}: {report.new} new, {report.changed} changed, "
                 f"{report.unchanged} unchanged, {report.pruned_files} pruned, {report.relabelled} relabelled, "
                 f"{len(report.failures)} failed{deleted}")
    if report.embedded:
        lines.append(f"embedded {plural(report.embedded, 'clip')} ({report.audio_seconds:.1f} s of audio) in "
                     f"{report.seconds:.1f} s = {report.clips_per_s:.1f} clips/s; collection now holds "
                     f"{plural(report.vectors, 'vector')}")
    else:
        lines.append(f"nothing to embed; collection now holds {plural(report.vectors, 'vector')} ({report.seconds:.1f} s)")
    if report.compaction:
        c = report.compaction
        lines.append(f"compacted {plural(c['merged_parts'], 'small part')} into {c['new_parts']}; "
                     f"{plural(c['parts_after'], 'part file')} now")
    if report.failures:
        lines.append(f"failures (also in {show(report.collection)}/errors.jsonl):")
        lines += [f"  {show(f['path'])}: {f['error']}: {show(f['message'])}" for f in report.failures]
    if report.skipped:
        lines.append("skipped (not readable as files):")
        lines += [f"  {show(f['path'])}: {show(f['message'])}" for f in report.skipped]
    return lines

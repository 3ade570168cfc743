"""``audiosim reembed``: a new collection with the same rows embedded by another model (a thin layer over ``reembed``)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import WAIT, WAIT_HELP, parse_options, plural, show
from audiosim.engine.ingest.reembed import reembed


@click.command("reembed")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The collection to re-embed (read only).")
@click.option("--embedder", required=True, help="The new embedder (see `audiosim embedders`).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The new collection (created; an interrupted run of the same command resumes it).")
@click.option("--weights", default=None, help="The new embedder's weights.")
@click.option("--device", default=None, help="Device for torch embedders (cpu, cuda).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Embedder option, repeatable.")
@click.option("--pooling", default=None, help="Pooling of the new vectors [default: the collection's].")
@click.option("--flush-every", default=32, show_default=True, type=click.IntRange(min=1),
              help="Commit every N files (a killed run resumes from the last commit).")
@click.option("--wait", type=WAIT, default=None, help=WAIT_HELP)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reembed_cmd(collection_dir, embedder, out_dir, weights, device, options, pooling, flush_every, wait, progress,
                as_json):
    """Write a new collection with the same ids, paths, labels and segments, embedded by another model."""

    report = reembed(collection_dir, out_dir, embedder=embedder, weights=weights, device=device,
                     embedder_options=parse_options(options), pooling=pooling, flush_every=flush_every,
                     progress=progress and not as_json, wait=wait)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"{show(report.collection)}: {plural(report.embedded_rows, 'vector')} embedded from "
               f"{plural(report.files, 'file')} of {show(report.source)}"
               + (f", {report.already_done} already there" if report.already_done else "")
               + f" in {report.seconds:.1f} s")
    for f in report.failures:
        click.echo(f"failed: {show(f['path'])}: {show(f['message'])}", err=True)

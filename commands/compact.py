"""``audiosim compact``: merge a collection's small parts (a thin layer over :func:`audiosim.engine.store.compaction.compact_collection`)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import WAIT, WAIT_HELP, Number, plural, show
from audiosim.engine.store.compaction import compact_collection


@click.command("compact")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--target-mb", default=64.0, show_default=True, type=Number(min=0.001, max=1 << 20),
              help="Size of a merged part in MiB; parts under half of it are merged.")
@click.option("--wait", default=None, type=WAIT, help=WAIT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def compact_cmd(collection_dir, target_mb, wait, as_json):
    """Merge small part files into large ones; ids, vectors and labels are unchanged and the index stays current."""

    report = compact_collection(collection_dir, target_bytes=int(target_mb * (1 << 20)), wait=wait)
    if as_json:
        click.echo(json.dumps({"collection": str(collection_dir), **report.to_dict()}, indent=2))
        return
    if not report.merged_parts:
        click.echo(f"nothing to compact in {show(collection_dir)}: {report.parts_after} part files")
        return
    click.echo(f"merged {plural(report.merged_parts, 'part')} ({plural(report.rows, 'row')}) into {report.new_parts}: "
               f"{report.parts_before} -> {report.parts_after} part files, "
               f"{report.bytes_before / 2**20:.1f} -> {report.bytes_after / 2**20:.1f} MiB in {report.seconds:.1f} s")

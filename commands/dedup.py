"""``audiosim dedup``: identical files and near-duplicate groups of a collection (a thin layer over Collection.duplicates)."""

from __future__ import annotations

import csv
import json
import sys

import click

from audiosim.commands.common import Number, plural, show
from audiosim.engine.search.dedup import DEFAULT_THRESHOLD
from audiosim.engine.search.library import open_collection


@click.command("dedup")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=Number(min=-1, max=1),
              help="Cosine similarity at or above which two files are near-duplicates (see docs/dedup.md).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Neighbours searched per file for the graph.")
@click.option("--mutual", default=1, show_default=True, type=click.IntRange(min=0),
              help="A near pair must be among each other's MUTUAL nearest neighbours (0: any pair above --threshold).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the neighbour graph is searched (cuda: a FAISS GPU build).")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV row per file: group, kind, similarity, id, path, label.")
def dedup_cmd(collection_dir, threshold, k, mutual, device, as_json, as_csv):
    """Find duplicate files in a collection: identical content (sha256), then near-duplicates above --threshold."""

    report = open_collection(collection_dir).duplicates(threshold=threshold, k=max(k, mutual), device=device,
                                                            mutual=mutual or None)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    if as_csv:
        w = csv.writer(sys.stdout)
        w.writerow(["group", "kind", "similarity", "id", "path", "label"])
        for g, group in enumerate(report.groups, 1):
            for m in group.members:
                w.writerow([g, group.kind, f"{m.similarity:.4f}", m.id, m.path, m.label or ""])
        return
    d = report.to_dict()
    click.echo(f"{plural(report.files, 'file')}: {plural(d['identical_groups'], 'group')} of identical files, "
               f"{plural(d['near_groups'], 'group')} of near-duplicates (cosine >= {report.threshold:g}) "
               f"in {report.seconds:.2f} s on the {report.device}")
    for g, group in enumerate(report.groups, 1):
        click.echo(f"group {g} ({group.kind}, {len(group.members)} files, weakest link {group.min_similarity:.3f}):")
        for m in group.members:
            click.echo(f"  {m.similarity:.3f}  {show(m.path)}" + (f"  [{show(m.label)}]" if m.label else ""))

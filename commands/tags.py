"""``audiosim tags``: how many vectors of a collection carry each classifier tag."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import Number, plural, show
from audiosim.engine.models.tags import COUNT_MIN_SCORE
from audiosim.engine.search.library import open_collection


@click.command("tags")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--min-score", default=None, type=Number(min=0, max=1), help="Count a tag only at this score or above [default: 0.2].")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(min=1), help="Tags to print (text output).")
@click.option("--json", "as_json", is_flag=True)
def tags_cmd(collection_dir, min_score, limit, as_json):
    """Count the classifier tags stored in a collection (collections indexed with yamnet or panns)."""

    coll = open_collection(collection_dir)
    threshold = COUNT_MIN_SCORE if min_score is None else min_score
    counts = coll.tag_counts(min_score=threshold)
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "min_score": threshold, "vectors": len(coll),
                               "tags": dict(counts)}, indent=2))
        return
    click.echo(f"{plural(len(counts), 'tag')} on {plural(len(coll), 'vector')} (score >= {threshold:g}):")
    for name, n in counts[:limit]:
        click.echo(f"{n:>8}  {show(name)}")
    if len(counts) > limit:
        click.echo(f"... and {len(counts) - limit} more (--limit N, or --json for all)")

"""``audiosim locate``: where an excerpt sits inside the long recordings of a segment collection."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import SECONDS, Number, show
from audiosim.engine.search.library import open_collection


@click.command("locate")
@click.argument("excerpt", type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(min=1), help="Files to report.")
@click.option("--top-m", default=20, show_default=True, type=click.IntRange(min=1),
              help="Matches per query segment that vote on the offset.")
@click.option("--start", "start_s", type=SECONDS, default=None, help="Use the excerpt from this time (s).")
@click.option("--end", "end_s", type=Number(min=0, min_open=True), default=None, help="Use the excerpt up to this time (s).")
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True)
def locate_cmd(excerpt, collection_dir, k, top_m, start_s, end_s, weights, as_json):
    """Find where EXCERPT (longer than one segment) was cut from: file, offset and confidence."""

    coll = open_collection(collection_dir)
    found = coll.searcher(weights=weights).locate(clip=excerpt, start_s=start_s, end_s=end_s, top_m=top_m, max_files=k)
    if as_json:
        click.echo(json.dumps({"excerpt": excerpt, "metric": coll.metric, "locations": [
            {"rank": loc.rank, "path": loc.path, "offset_s": loc.offset_s, "end_s": loc.end_s, "votes": loc.votes,
             "segments": loc.n_segments, "confidence": loc.confidence, "mean_score": loc.mean_score,
             "best_score": loc.best_score} for loc in found]}, indent=2))
        return
    click.echo(f"{'rank':>4}  {'offset':>9}  {'confidence':>10}  {'votes':>7}  path")
    for loc in found:
        click.echo(f"{loc.rank:>4}  {loc.offset_s:>8.2f}s  {loc.confidence:>10.2f}  {loc.votes:>3}/{loc.n_segments:<3}  "
                   f"{show(loc.path)}")
    if not found:
        click.echo("   (no match)")

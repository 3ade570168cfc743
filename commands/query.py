"""``audiosim query``: find the clips that sound like one or several example clips (a thin layer over ``Searcher``)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import show


@click.command("query")
@click.argument("clips", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--id", "ids", multiple=True, type=int, help="Search with a stored item's own vector (more like this); repeatable.")
@click.option("--tag", default=None,
              help="An AudioSet class name (e.g. 'Dog'): alone, rank the collection by it; with a query, keep items carrying it.")
@click.option("--group", type=click.Choice(["region", "file", "none"]), default=None,
              help="Merge hits of one file: touching segments (region), whole files (file), or not at all "
                   "[default: region for segment collections, else none].")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of results per query.")
@click.option("--label", "labels", multiple=True, help="Only items with this label (repeatable: any of them).")
@click.option("--path-prefix", default=None, help="Only items whose file lies in this folder (by path component).")
@click.option("--min-duration", "min_duration_s", type=float, default=None, help="Only items at least this long (s).")
@click.option("--max-duration", "max_duration_s", type=float, default=None, help="Only items at most this long (s).")
@click.option("--exclude-same-file", is_flag=True, help="Leave out items of the query's own file.")
@click.option("--start", "start_s", type=float, default=None, help="Use the query clip from this time (s).")
@click.option("--end", "end_s", type=float, default=None, help="Use the query clip up to this time (s).")
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True, help="Print all results as one JSON document.")
def query_cmd(clips, collection_dir, ids, tag, group, k, labels, path_prefix, min_duration_s, max_duration_s,
              exclude_same_file, start_s, end_s, weights, as_json):
    """Find the clips in a collection that sound most like each CLIP (or like stored items with --id, or a --tag)."""
    from audiosim.engine.library import open_collection
    from audiosim.errors import AudiosimError

    if clips and ids:
        raise AudiosimError("give one or more CLIP files or --id N (repeatable), not both")
    if not clips and not ids and tag is None:
        raise AudiosimError("give one or more CLIP files, --id N (repeatable), or --tag NAME")
    coll = open_collection(collection_dir)
    searcher = coll.searcher(weights=weights)
    filters = dict(k=k, tag=tag, group=group, label=list(labels) or None, path_prefix=path_prefix,
                   min_duration_s=min_duration_s, max_duration_s=max_duration_s, exclude_same_file=exclude_same_file)
    if clips:
        results = searcher.search(clip=list(clips), start_s=start_s, end_s=end_s, **filters)
        queries = list(clips)
    elif ids:
        results = searcher.search(id=list(ids), **filters)
        queries = [f"id {i}" for i in ids]
    else:
        results = [searcher.search(**filters)]
        queries = [f"tag {tag}"]
    segmented = coll.segment_s is not None
    if as_json:
        if len(queries) == 1:
            doc = {"query": queries[0], "metric": coll.metric, "results": [h.to_dict() for h in results[0]]}
        else:
            doc = {"metric": coll.metric, "queries": [{"query": q, "results": [h.to_dict() for h in r]}
                                                      for q, r in zip(queries, results)]}
        click.echo(json.dumps(doc, indent=2))
        return
    score_name = "tag" if (tag is not None and not clips and not ids) else (
        "cosine" if coll.metric == "cosine" else "distance")
    for n, (q, hits) in enumerate(zip(queries, results)):
        if len(queries) > 1:
            click.echo(("\n" if n else "") + f"query: {show(q)}")
        click.echo(f"{'rank':>4}  {score_name:>8}  {'label':<16}  path")
        for h in hits:
            click.echo(f"{h.rank:>4}  {h.score:>8.4f}  {show(h.label or '-'):<16}  {show(h.path)}{_where(h, segmented)}")
            if getattr(h, "tags", ()):
                why = ", ".join(t.name for t in h.shared_tags[:3])
                click.echo(f"{'':>17}tags: " + ", ".join(f"{t.name} {t.score:.2f}" for t in h.tags[:3])
                           + (f"; shared with the query: {why}" if why else ""))
        if not hits:
            click.echo("   (no item matches the filters)")


def _where(hit, segmented: bool) -> str:
    """Where in its file a hit is: a region's span, or a segment's start."""
    if hasattr(hit, "start_s"):
        n = len(hit.hits)
        return f" @{hit.start_s:.1f}-{hit.end_s:.1f}s ({n} segment{'s' if n != 1 else ''})"
    return f" @{hit.offset_s:.1f}s" if segmented else ""

"""``audiosim query``: find the clips that sound like one or several example clips (a thin layer over ``Searcher``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from audiosim.commands.common import ITEM_ID, SECONDS, Number, show
from audiosim.engine.search.library import open_collection
from audiosim.engine.search.regions import Region
from audiosim.errors import InvalidOptionError
from audiosim.files import write_bytes_atomic


@click.command("query")
@click.argument("clips", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--id", "ids", multiple=True, type=ITEM_ID, help="Search with a stored item's own vector (more like this); repeatable.")
@click.option("--text", "texts", multiple=True,
              help="Describe the sound (e.g. 'a dog barking'); needs a collection embedded by CLAP (docs/models.md). Repeatable.")
@click.option("--tag", default=None,
              help="An AudioSet class name (e.g. 'Dog'): alone, rank the collection by it; with a query, keep items carrying it.")
@click.option("--group", type=click.Choice(["region", "file", "none"]), default=None,
              help="Merge hits of one file: touching segments (region), whole files (file), or not at all "
                   "[default: region for segment collections, else none].")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of results per query.")
@click.option("--label", "labels", multiple=True, help="Only items with this label (repeatable: any of them).")
@click.option("--path-prefix", default=None, help="Only items whose file lies in this folder (by path component).")
@click.option("--min-duration", "min_duration_s", type=SECONDS, default=None, help="Only items at least this long (s).")
@click.option("--max-duration", "max_duration_s", type=SECONDS, default=None, help="Only items at most this long (s).")
@click.option("--exclude-same-file", is_flag=True, help="Leave out items of the query's own file.")
@click.option("--start", "start_s", type=SECONDS, default=None, help="Use the query clip from this time (s).")
@click.option("--end", "end_s", type=Number(min=0, min_open=True), default=None, help="Use the query clip up to this time (s).")
@click.option("--weights", default=None, help="Weights, if they moved since indexing.")
@click.option("--json", "as_json", is_flag=True,
              help='Print the results as one JSON document, {"metric", "queries": [{"query", "results"}]} '
                   "(docs/json.md).")
@click.option("--csv", "csv_path", default=None, metavar="FILE",
              help="Also write the results as CSV (query, rank, score, id, label, path, start_s, end_s, segments, tags); "
                   "'-' prints the CSV instead of the table.")
def query_cmd(clips, collection_dir, ids, texts, tag, group, k, labels, path_prefix, min_duration_s, max_duration_s,
              exclude_same_file, start_s, end_s, weights, as_json, csv_path):
    """Find the clips in a collection that sound most like each CLIP (or like stored items with --id, or a --tag)."""

    if sum(bool(x) for x in (clips, ids, texts)) > 1:
        raise InvalidOptionError("give one kind of query: CLIP files, --id N or --text DESCRIPTION (each repeatable), not several")
    if not clips and not ids and not texts and tag is None:
        raise InvalidOptionError("give one or more CLIP files, --id N (repeatable), --text DESCRIPTION, or --tag NAME")
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
    elif texts:
        results = searcher.search(text=list(texts), **filters)
        queries = [f"text {t}" for t in texts]
    else:
        results = [searcher.search(**filters)]
        queries = [f"tag {tag}"]
    segmented = coll.segment_s is not None
    if as_json and csv_path == "-":
        raise InvalidOptionError("--json and --csv - both print to standard output; write the CSV to a file (--csv FILE)")
    if csv_path is not None:
        write_csv(csv_path, queries, results)
        if csv_path == "-":
            return
    if as_json:  # one shape whatever the number of queries (docs/json.md)
        doc = {"metric": coll.metric, "queries": [{"query": q, "results": [h.to_dict() for h in r]}
                                                  for q, r in zip(queries, results)]}
        click.echo(json.dumps(doc, indent=2))
        return
    score_name = "tag" if (tag is not None and not clips and not ids and not texts) else (
        "cosine" if coll.metric == "cosine" else "distance")
    for n, (q, hits) in enumerate(zip(queries, results)):
        if len(queries) > 1:
            click.echo(("\n" if n else "") + f"query: {show(q)}")
        click.echo(f"{'rank':>4}  {score_name:>8}  {'label':<16}  path")
        for h in hits:
            click.echo(f"{h.rank:>4}  {h.score:>8.4f}  {show(h.label or '-'):<16}  {show(h.path)}{_where(h, segmented)}")
            for line in tag_lines(h):
                click.echo(f"{'':>17}{line}")
        if not hits:
            click.echo("   (no item matches the filters)")


CSV_COLUMNS = ("query", "rank", "score", "id", "label", "path", "start_s", "end_s", "segments", "tags")


def csv_rows(queries, results) -> list[dict]:
    """One row per hit or region: where it is (start and end in its file), its segments and its tags."""
    rows = []
    for q, hits in zip(queries, results):
        for h in hits:
            start = float(h.offset_s)
            region = isinstance(h, Region)
            end = float(h.end_s) if region else start + float(h.duration_s)
            rows.append({"query": q, "rank": h.rank, "score": f"{float(h.score):.6g}", "id": h.id, "label": h.label or "",
                         "path": h.path, "start_s": f"{start:.3f}", "end_s": f"{end:.3f}",
                         "segments": len(h.hits) if region else 1,
                         "tags": TAG_SEPARATOR.join(f"{t.name} ({t.score:.2f})" for t in getattr(h, "tags", ()))})
    return rows


def write_csv(path: str, queries, results) -> None:
    """The results as CSV in ``path`` (``"-"``: standard output)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(queries, results))
    if path == "-":
        click.echo(buf.getvalue(), nl=False)
        return
    try:
        write_bytes_atomic(Path(path), buf.getvalue().encode())
    except OSError as e:
        raise InvalidOptionError(f"cannot write {path}: {e.strerror or e}; give --csv a writable file path") from None


TAG_SEPARATOR = "; "  # AudioSet names contain commas ("Narration, monologue"), never semicolons


def tag_lines(hit, *, top: int = 3) -> list[str]:
    """A hit's strongest tags and the ones it shares with the query, e.g. ``tags: Speech (1.00); Narration, monologue (0.01)``."""
    if not getattr(hit, "tags", ()):
        return []
    lines = ["tags: " + TAG_SEPARATOR.join(f"{show(t.name)} ({t.score:.2f})" for t in hit.tags[:top])]
    shared = [show(t.name) for t in hit.shared_tags[:top]]
    if shared:
        lines.append("shared with the query: " + TAG_SEPARATOR.join(shared))
    return lines


def _where(hit, segmented: bool) -> str:
    """Where in its file a hit is: a region's span, or a segment's start."""
    if isinstance(hit, Region):
        n = len(hit.hits)
        return f" @{hit.start_s:.1f}-{hit.end_s:.1f}s ({n} segment{'s' if n != 1 else ''})"
    return f" @{hit.offset_s:.1f}s" if segmented else ""

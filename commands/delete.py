"""``audiosim delete``: remove vectors from a collection by file path or by id (a thin layer over ``Collection.delete``)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import ITEM_ID, WAIT, WAIT_HELP, plural, show
from audiosim.engine.search.library import missing_items, open_collection
from audiosim.errors import InvalidOptionError


@click.command("delete")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--path", "paths", multiple=True, help="Remove every vector of this audio file (repeatable).")
@click.option("--id", "ids", multiple=True, type=ITEM_ID, help="Remove the vector with this id (repeatable).")
@click.option("--wait", default=None, type=WAIT, help=WAIT_HELP)
@click.option("--missing-ok", is_flag=True,
              help="An --id or --path the collection does not hold is reported, not an error (exit 0): for scripts "
                   "and retries [default: exit 2, nothing deleted].")
@click.option("--json", "as_json", is_flag=True)
def delete_cmd(collection_dir, paths, ids, wait, as_json, missing_ok):
    """Remove vectors by --path or --id; the index is updated in the same run. Audio files are never touched."""

    if not paths and not ids:
        raise InvalidOptionError("give --path FILE or --id N (each repeatable)")
    coll = open_collection(collection_dir)
    before = set(coll.deleted)
    lost_ids, lost_paths = missing_items(coll, ids=ids, paths=paths) if missing_ok else ([], [])
    removed = coll.delete(ids=list(ids) or None, paths=list(paths) or None, wait=wait, missing_ok=missing_ok)
    coll.refresh()
    forgotten = [p for p in coll.deleted if p not in before]
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "removed": removed, "missing": {"ids": lost_ids, "paths": lost_paths}, "vectors": len(coll),
                               "deleted_files": forgotten}))
        return
    click.echo(f"removed {plural(removed, 'vector')}; collection now holds {plural(len(coll), 'vector')} (revision {coll.revision})")
    if lost_ids or lost_paths:
        click.echo("not in the collection (nothing to remove): "
                   + ", ".join([f"id {i}" for i in lost_ids] + [show(p) for p in lost_paths]))
    if forgotten:
        click.echo(f"{plural(len(forgotten), 'file')} left out of later `audiosim index` runs "
                   "(`audiosim undelete` or `index --include-deleted` brings them back)")

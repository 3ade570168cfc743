"""``audiosim delete``: remove vectors from a collection by file path or by id (a thin layer over ``Collection.delete``)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import WAIT_HELP


@click.command("delete")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--path", "paths", multiple=True, help="Remove every vector of this audio file (repeatable).")
@click.option("--id", "ids", multiple=True, type=int, help="Remove the vector with this id (repeatable).")
@click.option("--wait", default=None, type=float, help=WAIT_HELP)
@click.option("--json", "as_json", is_flag=True)
def delete_cmd(collection_dir, paths, ids, wait, as_json):
    """Remove vectors by --path or --id; the index is updated in the same run. Audio files are never touched."""
    from audiosim.engine.library import open_collection
    from audiosim.errors import AudiosimError

    if not paths and not ids:
        raise AudiosimError("give --path FILE or --id N (each repeatable)")
    coll = open_collection(collection_dir)
    removed = coll.delete(ids=list(ids) or None, paths=list(paths) or None, wait=wait)
    coll.refresh()
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "removed": removed, "vectors": len(coll)}))
        return
    click.echo(f"removed {removed} vectors; collection now holds {len(coll)} vectors (revision {coll.revision})")

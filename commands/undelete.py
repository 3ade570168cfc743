"""``audiosim undelete``: let ``index`` embed deleted files again (a thin layer over ``Collection.undelete``)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import WAIT, WAIT_HELP, plural, show
from audiosim.engine.search.library import open_collection
from audiosim.errors import InvalidOptionError


@click.command("undelete")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--path", "paths", multiple=True, help="A deleted audio file to take off the deleted list (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Take every deleted file off the list.")
@click.option("--wait", default=None, type=WAIT, help=WAIT_HELP)
@click.option("--json", "as_json", is_flag=True)
def undelete_cmd(collection_dir, paths, everything, wait, as_json):
    """Let the next `audiosim index` embed deleted files again (--path FILE, repeatable, or --all)."""

    if bool(paths) == everything:
        raise InvalidOptionError("give --path FILE (repeatable) or --all; "
                            "`audiosim info --collection DIR --deleted` lists the deleted files")
    coll = open_collection(collection_dir)
    back = coll.undelete(paths=None if everything else list(paths), wait=wait)
    coll.refresh()
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "undeleted": back, "deleted": list(coll.deleted)}))
        return
    if not back:
        click.echo(f"no deleted files in {show(coll.root)}")
        return
    click.echo(f"{plural(len(back), 'file')} off the deleted list; the next `audiosim index` of "
               f"{'its folder' if len(back) == 1 else 'their folders'} embeds {'it' if len(back) == 1 else 'them'} again")

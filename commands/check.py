"""``audiosim check`` (verify a collection; writes nothing) and ``audiosim repair`` (make a damaged one sound again).

Thin layers over :func:`audiosim.engine.store.integrity.check_collection` and
:func:`~audiosim.engine.store.integrity.repair_collection`. Exit codes: 0 sound (warnings allowed),
1 problems found (check) or left after a repair, 2 the command could not run (not a collection,
locked by a writer, bad options).
"""

from __future__ import annotations

import json

import click

from audiosim.commands.common import WAIT, WAIT_HELP, plural, show
from audiosim.engine.store.integrity import check_collection, lost_summary, repair_collection


@click.command("check")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Collection directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def check_cmd(ctx, collection_dir, as_json):
    """Verify a collection: manifest, every part's size, sha256 and contents, ids, and the saved index.

    Reads a snapshot without taking the writer lock and writes nothing, so it may run while
    another process indexes. Exits 1 when it finds a problem (`audiosim repair` fixes it).
    """

    _finish(ctx, check_collection(collection_dir), lines=check_lines, as_json=as_json)


@click.command("repair")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Collection directory.")
@click.option("--wait", default=None, type=WAIT, help=WAIT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
def repair_cmd(ctx, collection_dir, wait, as_json):
    """Make a damaged collection sound: drop unreadable parts, rebuild a lost manifest and the index.

    Lists the audio files whose vectors were lost; `audiosim index` of their folder embeds them
    again. Never touches audio files. Holds the writer lock while it works.
    """

    _finish(ctx, repair_collection(collection_dir, wait=wait), lines=repair_lines, as_json=as_json)


def _finish(ctx, report, *, lines, as_json: bool) -> None:
    """Print ``report`` (JSON, or the text ``lines(report)`` gives) and exit 1 when it is not ok."""
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in lines(report):
            click.echo(line)
    ctx.exit(0 if report.ok else 1)


def _problem_lines(problems) -> list[str]:
    lines = []
    for p in problems:
        lines.append(f"{p.severity}: {show(p.file)}: {show(p.problem)}")
        lines.append(f"    fix: {show(p.fix)}")
    return lines


def check_lines(report) -> list[str]:
    """The human-readable check report."""
    head = f"collection {show(report.collection)}"
    if report.revision is not None:
        head += f": revision {report.revision}, {plural(report.vectors, 'vector')} in {plural(report.parts, 'part')}"
        head += f", index {show(report.index)}" if report.index else ", no saved index"
    lines = [head, *_problem_lines(report.problems)]
    if report.ok:
        lines.append("ok: every part matches its size and sha256 and reads back; ids are unique and below next_id; "
                     + ("the index matches" if report.index else "nothing else to verify")
                     + (f" ({plural(len(report.warnings), 'warning')})" if report.warnings else ""))
    else:
        lines.append(f"{plural(len(report.errors), 'problem')}: run `audiosim repair --collection {show(report.collection)}`")
    return lines


def repair_lines(report) -> list[str]:
    """The human-readable repair report."""

    lines = []
    if report.manifest_rebuilt:
        lines.append(f"rebuilt collection.json from the parts on disk ({show(report.manifest_problem)})")
    for d in report.dropped_parts:
        lines.append(f"dropped {show(d['part'])} ({plural(d['rows'], 'vector')}): {show(d['reason'])}")
    for r in report.restored_parts:
        lines.append(f"restored {show(r['part'])} from {show(r['from'])} (its exact bytes)")
    if report.removed_files:
        lines.append(f"removed {len(report.removed_files)} temporary files of an interrupted write")
    if report.index_rebuilt:
        lines.append("rebuilt the index")
    lines += [f"note: {show(n)}" for n in report.notes if report.repaired]
    if report.lost_files:
        how = "" if report.lost_files_exact else " (from the source folders: files that never indexed may be listed too)"
        lines.append(f"lost the vectors of {len(report.lost_files)} audio files{how}; `audiosim index` of their folder "
                     "embeds them again:")
        lines += [f"  {show(f)}" for f in lost_summary(report.lost_files)]
    if report.repaired:
        lines.append(f"repaired {show(report.collection)}: {plural(report.vectors, 'vector')}, revision {report.revision}")
    else:
        lines.append(f"nothing to repair in {show(report.collection)}: {plural(report.vectors, 'vector')}, revision {report.revision}")
    if report.after is not None and not report.ok:
        lines.append("still wrong after the repair:")
        lines += _problem_lines(report.after.errors)
    return lines

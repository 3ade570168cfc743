"""``audiosim dedup``: identical files and near-duplicate groups of a collection (a thin layer over find_duplicates,
which Collection.duplicates runs)."""

from __future__ import annotations

import csv
import json
import sys

import click

from audiosim.commands.common import Number, plural, show
from audiosim.engine.search.dedup import DEFAULT_THRESHOLD, STRETCH, find_duplicates
from audiosim.engine.search.library import open_collection


@click.command("dedup")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=Number(min=-1, max=1),
              help="Similarity at or above which two files are near-duplicates: the audio comparison's score "
                   "(--verify) or the vectors' cosine (--no-verify); see docs/dedup.md.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check each candidate pair found by the vectors by comparing the two files' audio "
                   "(--no-verify: the vectors' cosine alone decides).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Neighbours searched per file for the graph.")
@click.option("--mutual", default=1, show_default=True, type=click.IntRange(min=0),
              help="Vector rule (--no-verify, or files that cannot be read): a near pair must be among each "
                   "other's MUTUAL nearest neighbours (0: any pair above --threshold).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the neighbour graph is searched (auto: a GPU when FAISS or torch sees one, else the CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print one CSV row per file: group, kind, similarity, id, path, label, basis, offset_s, end_s.")
def dedup_cmd(collection_dir, threshold, verify, k, mutual, device, as_json, as_csv):
    """Find duplicate files in a collection: identical content (sha256), then near-duplicates above --threshold."""

    report = find_duplicates(open_collection(collection_dir), threshold=threshold, k=max(k, mutual), device=device,
                             mutual=mutual or None, verify=verify)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    if as_csv:
        w = csv.writer(sys.stdout)
        w.writerow(["group", "kind", "similarity", "id", "path", "label", "basis", "offset_s", "end_s"])
        for g, group in enumerate(report.groups, 1):
            for m in group.members:
                w.writerow([g, group.kind, f"{m.similarity:.4f}", m.id, m.path, m.label or "", m.basis,
                            "" if m.offset_s is None else f"{m.offset_s:.3f}", "" if m.end_s is None else f"{m.end_s:.3f}"])
        return
    d = report.to_dict()
    how = "audio score" if report.verify else "cosine"
    found = (f"{plural(d.get('stretch_groups', 0), 'duplicated stretch', 'duplicated stretches')}"
             if any(g.kind == STRETCH for g in report.groups) else
             f"{plural(d['identical_groups'], 'group')} of identical files, "
             f"{plural(d['near_groups'], 'group')} of near-duplicates")
    click.echo(f"{plural(report.files, 'file')}: {found} ({how} >= {report.threshold:g}) "
               f"in {report.seconds:.2f} s, neighbour graph on the {report.device}")
    v = report.verification
    if v is not None:
        click.echo(f"verified: {v.compared_pairs} of {v.candidate_pairs} candidate pairs compared by their audio"
                   + (f"; {v.vector_pairs} judged by their vectors" if v.vector_pairs else "")
                   + (f"; {plural(v.unreadable_files, 'file')} could not be read" if v.unreadable_files else ""))
        for line in v.unreadable:
            click.echo(f"  unreadable: {show(line)}")
    for g, group in enumerate(report.groups, 1):
        click.echo(f"group {g} ({group.kind}, {len(group.members)} files, weakest link {group.min_similarity:.3f}):")
        for m in group.members:
            where = f"  {m.offset_s:.2f}-{m.end_s:.2f} s" if m.offset_s is not None else ""
            basis = "" if m.basis in ("sha256", "content") else f"  ({m.basis})"
            click.echo(f"  {m.similarity:.3f}  {show(m.path)}{where}" + (f"  [{show(m.label)}]" if m.label else "") + basis)

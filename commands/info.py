"""``audiosim info`` (describe a collection) and ``audiosim embedders`` (list the registered embedders)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import plural, show
from audiosim.engine.models.embedders import describe_embedders
from audiosim.engine.search.library import open_collection


def describe(coll) -> dict:
    """The collection's description as ``info --json`` prints it."""
    m = coll.manifest
    items = coll.items()
    info = {"embedder": m.embedder.to_dict(), "pooling": m.pooling.to_dict(), "metric": m.metric, "dim": m.dim,
            "count": m.count, "revision": m.revision, "created": m.created, "updated": m.updated,
            "audiosim_version": m.audiosim_version, "files": len(items.paths), "parts": len(m.parts),
            "labels": items.label_counts(), "unlabelled": int((items.label_code < 0).sum()),
            "deleted_files": len(m.deleted), "label_sources": m.label_sources, "postprocess": m.postprocess, "segment_s": m.segment_s,
            "segment_hop_s": m.segment_hop_s, "sources": list(m.sources), "index_kind": m.index_kind,
            "index": None}
    if m.index is not None:
        info["index"] = {"kind": m.index.kind, "revision": m.index.revision, "count": m.index.count,
                         "fresh": m.index_fresh, "dir": m.index.dir}
        sidecar = coll.root / m.index.dir / "index.json"
        if sidecar.is_file():
            info["index"]["sidecar"] = json.loads(sidecar.read_text())
    return info


@click.command("info")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--files", "list_files", is_flag=True, help="List the files it holds: vectors, label, path.")
@click.option("--deleted", "list_deleted", is_flag=True,
              help="List the deleted files that `audiosim index` leaves out (see `audiosim undelete`).")
@click.option("--json", "as_json", is_flag=True)
def info_cmd(collection_dir, list_files, list_deleted, as_json):
    """Describe a collection: embedder, pooling, metric, size, labels, index."""

    coll = open_collection(collection_dir)
    if list_files or list_deleted:
        _list(coll, files=list_files, as_json=as_json)
        return
    info = describe(coll)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    e = info["embedder"]
    click.echo(f"collection   {show(coll.root)}")
    click.echo(f"embedder     {e['name']} {e['version']} ({e['dim']}-d, {e['sample_rate']} Hz, weights sha256 {e.get('weights_sha256') or '-'})")
    click.echo(f"pooling      {info['pooling']['name']}    metric {info['metric']}    dim {info['dim']}")
    click.echo(f"vectors      {info['count']} from {plural(info['files'], 'file')} in {plural(info['parts'], 'part')} "
               f"(revision {info['revision']})")
    if info["segment_s"] is not None:
        hop = info["segment_hop_s"] or info["segment_s"]
        click.echo(f"segments     {info['segment_s']:g} s every {hop:g} s")
    if info["postprocess"]:
        click.echo(f"postprocess  {info['postprocess']}")
    idx = info["index"]
    if info["index_kind"] != "flat" or (idx is not None and not idx["fresh"]):
        state = "missing" if idx is None else ("current" if idx["fresh"] else
                                               f"built at revision {idx['revision']}, updated by the next `audiosim index`")
        click.echo(f"index        {info['index_kind']} ({state}){_build_text(idx)}")
    unlabelled = f"{info['unlabelled']} unlabelled"
    if info["labels"]:
        click.echo(f"labels       {len(info['labels'])}: " + ", ".join(f"{show(k)} ({v})" for k, v in info["labels"].items())
                   + (f"; {unlabelled}" if info["unlabelled"] else ""))
    elif info["count"]:
        click.echo(f"labels       none ({unlabelled})")
    if info["deleted_files"]:
        click.echo(f"deleted      {plural(info['deleted_files'], 'file')} left out of `audiosim index` "
                   "(--deleted lists them; `audiosim undelete` brings them back)")


def _list(coll, *, files: bool, as_json: bool) -> None:
    """``info --files`` (vectors and label per file) or ``info --deleted`` (the deleted list)."""
    if not files:
        if as_json:
            click.echo(json.dumps({"collection": str(coll.root), "deleted": list(coll.deleted)}, indent=2))
        for p in () if as_json else coll.deleted:
            click.echo(show(p))
        return
    rows = [{"path": p, "vectors": len(f.ids), "label": f.label} for p, f in sorted(coll.files().items())]
    if as_json:
        click.echo(json.dumps({"collection": str(coll.root), "files": rows}, indent=2))
        return
    for r in rows:
        click.echo(f"{r['vectors']:>7}  {show(r['label'] or '-'):<16}  {show(r['path'])}")


def _build_text(idx: dict | None) -> str:
    """What an ``auto`` index chose and measured, from its sidecar."""
    side = (idx or {}).get("sidecar") or {}
    build = side.get("build") or {}
    if build.get("requested") != "auto":
        return ""
    params = ", ".join(f"{k}={v}" for k, v in (side.get("params") or {}).items() if v not in (None, 0, False))
    knob = f", {build['knob']} {build['value']}" if build.get("knob") else ""
    mb = (build.get("memory_bytes") or side.get("memory_bytes") or 0) / 1e6
    return (f": chose {build.get('kind')} ({params}{knob}); recall@{build.get('k', 10)} {build.get('measured_recall', 0):.3f} "
            f"measured on {build.get('queries', 0)} held-out queries (target {build.get('target_recall')}), "
            f"{mb:.1f} MB")


@click.command("embedders")
def embedders_cmd():
    """List the registered embedders."""

    for name, text in describe_embedders().items():
        click.echo(f"{name:<8} {text}")

"""``audiosim info`` (describe a collection) and ``audiosim embedders`` (list the registered embedders)."""

from __future__ import annotations

import json

import click

from audiosim.commands.common import show


def describe(coll) -> dict:
    """The collection's description as ``info --json`` prints it."""
    m = coll.manifest
    items = coll.items()
    info = {"embedder": m.embedder.to_dict(), "pooling": m.pooling.to_dict(), "metric": m.metric, "dim": m.dim,
            "count": m.count, "revision": m.revision, "created": m.created, "updated": m.updated,
            "audiosim_version": m.audiosim_version, "files": len(items.paths), "parts": len(m.parts),
            "labels": items.label_counts(), "postprocess": m.postprocess, "segment_s": m.segment_s,
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
@click.option("--json", "as_json", is_flag=True)
def info_cmd(collection_dir, as_json):
    """Describe a collection: embedder, pooling, metric, size, labels, index."""
    from audiosim.engine.library import open_collection

    coll = open_collection(collection_dir)
    info = describe(coll)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    e = info["embedder"]
    click.echo(f"collection   {show(coll.root)}")
    click.echo(f"embedder     {e['name']} {e['version']} ({e['dim']}-d, {e['sample_rate']} Hz, weights sha256 {e.get('weights_sha256') or '-'})")
    click.echo(f"pooling      {info['pooling']['name']}    metric {info['metric']}    dim {info['dim']}")
    click.echo(f"vectors      {info['count']} from {info['files']} files in {info['parts']} parts (revision {info['revision']})")
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
    if info["labels"]:
        click.echo(f"labels       {len(info['labels'])}: " + ", ".join(f"{show(k)} ({v})" for k, v in info["labels"].items()))


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
    from audiosim.engine.embedders import describe_embedders

    for name, text in describe_embedders().items():
        click.echo(f"{name:<8} {text}")

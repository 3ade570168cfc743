"""``audiosim map``: a 2-D map of a collection as one HTML page (a thin layer over engine/search/atlas.py)."""

from __future__ import annotations

import click

from audiosim.commands.common import show
from audiosim.engine.search.atlas import write_map
from audiosim.engine.search.library import open_collection


@click.command("map")
@click.option("--collection", "collection_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--clusters", default=None, type=click.IntRange(min=1, max=50),
              help="k-means clusters [default: about sqrt(items / 2), at most 20].")
@click.option("--seed", default=0, show_default=True)
def map_cmd(collection_dir, out, clusters, seed):
    """Write a 2-D map of a collection (UMAP, else PCA + t-SNE) as HTML: colours by label or cluster, click to play."""

    m = write_map(open_collection(collection_dir), out, clusters=clusters, seed=seed)
    click.echo(f"wrote {show(out)}: {len(m.ids)} points ({m.method}), {len(m.cluster_names)} clusters: "
               + "; ".join(m.cluster_names[:8]) + (" ..." if len(m.cluster_names) > 8 else ""))

"""A map of a collection: every stored vector placed in 2-D, coloured by label or cluster, as one HTML file.

:func:`collection_map` projects the stored vectors (L2-normalised, so distances follow cosine)
to 2-D -- UMAP when ``umap-learn`` is installed, otherwise PCA to at most 50 dimensions followed
by t-SNE (scikit-learn; PCA alone under 5 items) -- and groups them with k-means (k about
sqrt(n / 2), at most 20); with ``max_points``, a collection holding more vectors is mapped through
a seeded random sample of that many (:attr:`CollectionMap.total` says how many it holds). Each
cluster is named by the commonest stored tags of its members ("Speech / Dog"), else by its
commonest labels, else "cluster N". Points are coloured by label when the collection has labels,
else by cluster (:meth:`CollectionMap.legend`; the served page's Map view uses the same colours).
:func:`render_html` writes a self-contained page
(no network): hover shows the file, clicking plays it (``file://`` URL, or the server's audio URL
when ``audio_url`` is given) and, with ``search_url``, opens a search by that item.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.errors import CollectionError, InvalidOptionError
from audiosim.files import write_bytes_atomic

MAX_CLUSTERS = 20
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
           "#756bb1", "#636363")


@dataclass(frozen=True)
class LegendEntry:
    """One colour of a map: the label (or cluster name) it stands for and how many points carry it."""

    name: str
    colour: str
    count: int


@dataclass(frozen=True)
class CollectionMap:
    ids: np.ndarray
    xy: np.ndarray  # [n, 2]
    cluster: np.ndarray  # [n]
    cluster_names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: tuple[str | None, ...]
    offsets_s: np.ndarray
    method: str
    total: int  # vectors the collection holds; more than len(ids) when the map is of a sample

    @property
    def sampled(self) -> bool:
        return self.total > len(self.ids)

    @property
    def coloured_by(self) -> str:
        """``"label"`` when any point has a label, else ``"cluster"``."""
        return "label" if any(self.labels) else "cluster"

    def legend(self) -> tuple[tuple[LegendEntry, ...], np.ndarray]:
        """The map's colours and each point's index into them: one entry per label (sorted by name, "(none)" for
        unlabelled points) when coloured by label, else one per cluster name (clusters of one name share it)."""
        if self.coloured_by == "label":
            keys = [lab or "(none)" for lab in self.labels]
        else:
            keys = [self.cluster_names[int(c)] for c in self.cluster]
        names = sorted(set(keys)) if self.coloured_by == "label" else list(dict.fromkeys(self.cluster_names))
        at = {name: i for i, name in enumerate(names)}
        index = np.array([at[k] for k in keys], dtype=np.int64)
        counts = np.bincount(index, minlength=len(names))
        entries = tuple(LegendEntry(name, PALETTE[i % len(PALETTE)], int(counts[i])) for i, name in enumerate(names))
        return entries, index

    def to_dict(self) -> dict:
        return {"method": self.method, "total": self.total, "sampled": self.sampled, "clusters": list(self.cluster_names),
                "points": [{"id": int(i), "x": float(x), "y": float(y), "cluster": int(c), "path": p, "label": lab,
                            "offset_s": float(o)}
                           for i, (x, y), c, p, lab, o in zip(self.ids, self.xy, self.cluster, self.paths, self.labels,
                                                               self.offsets_s)]}


def project(X: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``X`` and the method's name."""
    n = X.shape[0]
    if n == 1:
        return np.zeros((1, 2)), "none"
    try:
        import umap  # noqa: F401  (umap-learn, optional)
    except ImportError:
        umap = None
    if umap is not None and n >= 10:
        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(X), "umap"
    from sklearn.decomposition import PCA

    pcs = PCA(n_components=min(50, n, X.shape[1]), random_state=seed).fit_transform(X)
    if n < 5:
        return np.pad(pcs[:, :2], ((0, 0), (0, max(0, 2 - pcs.shape[1])))), "pca"
    from sklearn.manifold import TSNE

    xy = TSNE(n_components=2, perplexity=float(min(30, (n - 1) / 3)), init="pca", random_state=seed).fit_transform(pcs)
    return xy, "pca+tsne"


def collection_map(collection, *, clusters: int | None = None, seed: int = 0,
                   max_points: int | None = None) -> CollectionMap:
    """Project and cluster ``collection``'s vectors (a seeded random sample of ``max_points`` of them when it
    holds more); see the module docstring."""
    if max_points is not None and int(max_points) < 1:
        raise InvalidOptionError(f"max_points must be at least 1, got {max_points}")
    items = collection.items()
    if len(items) == 0:
        raise CollectionError(f"{collection.root} holds no vectors; index a folder into it before mapping it")
    ids, X = collection.embeddings()
    total = len(ids)
    if max_points is not None and total > int(max_points):
        keep = np.sort(np.random.default_rng(seed).choice(total, size=int(max_points), replace=False))
        ids, X = np.asarray(ids)[keep], np.asarray(X)[keep]
    n = len(ids)
    pos = items.positions(ids)
    X = np.asarray(X, dtype=np.float64)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    xy, method = project(X, seed=seed)
    k = clusters if clusters is not None else int(np.clip(round(np.sqrt(n / 2)), 1, MAX_CLUSTERS))
    k = max(1, min(int(k), n))
    if k == 1:
        cl = np.zeros(n, dtype=np.int64)
    else:
        from sklearn.cluster import KMeans

        cl = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X)
    paths = tuple(items.paths[int(items.path_code[p])] for p in pos)
    labels = tuple((items.labels[int(items.label_code[p])] if items.label_code[p] >= 0 else None) for p in pos)
    names = []
    cmap = getattr(collection, "class_map", None)
    for c in range(k):
        members = pos[cl == c]
        name = ""
        if cmap is not None and items.tag_ids is not None:
            counts = Counter(int(t) for p in members for t in items.tag_ids[p][:3] if 0 <= t < len(cmap.names)
                             and cmap.names[int(t)].casefold() != "silence")
            name = " / ".join(cmap.names[t] for t, _ in counts.most_common(2))
        if not name:
            counts = Counter(labels[i] for i in np.flatnonzero(cl == c) if labels[i])
            name = " / ".join(lab for lab, _ in counts.most_common(2))
        names.append(name or f"cluster {c + 1}")
    return CollectionMap(ids=np.asarray(ids), xy=np.asarray(xy, dtype=np.float64), cluster=np.asarray(cl),
                         cluster_names=tuple(names), paths=paths, labels=labels,
                         offsets_s=np.asarray(items.offset_s[pos], dtype=np.float64), method=method, total=total)


def render_html(m: CollectionMap, *, title: str, audio_url: str | None = None, search_url: str | None = None) -> str:
    """A self-contained HTML page with one SVG circle per point (``class="point"``, ``data-id``)."""
    xy = m.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    P = 20 + (xy - lo) / span * 760
    by_label = m.coloured_by == "label"
    entries, colour_of = m.legend()
    circles = []
    for i, ((x, y), c, p, lab) in enumerate(zip(P, m.cluster, m.paths, m.labels)):
        tip = f"{Path(p).name}" + (f" [{lab}]" if lab else "") + f" - {m.cluster_names[int(c)]}"
        circles.append(f'<circle class="point" data-id="{int(m.ids[i])}" data-path="{html.escape(p, quote=True)}" '
                       f'cx="{x:.1f}" cy="{800 - y:.1f}" r="5" fill="{entries[colour_of[i]].colour}">'
                       f'<title>{html.escape(tip)}</title></circle>')
    legend = "".join(f'<li><span style="background:{e.colour}"></span>{html.escape(e.name)}</li>' for e in entries)
    clusters = "".join(f"<li>{i + 1}. {html.escape(n)} ({int((m.cluster == i).sum())})</li>"
                       for i, n in enumerate(m.cluster_names))
    config = json.dumps({"audio_url": audio_url, "search_url": search_url})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em;display:flex;gap:1.5em}} svg{{border:1px solid #ccc;background:#fff}}
circle.point{{cursor:pointer;opacity:.8}} circle.point:hover{{stroke:#000;stroke-width:2;opacity:1}}
ul{{list-style:none;padding:0}} li span{{display:inline-block;width:12px;height:12px;margin-right:6px}}</style></head>
<body><svg id="map" width="800" height="800" viewBox="0 0 800 800">{''.join(circles)}</svg>
<div><h1>{html.escape(title)}</h1><p>{len(m.ids)} items{f' (a random sample of {m.total})' if m.sampled else ''},
{html.escape(m.method)}; coloured by
{'label' if by_label else 'cluster'}. Hover for the file, click to play{', shift-click to search by it' if search_url else ''}.</p>
<p id="current">&nbsp;</p><audio id="player" controls></audio>
<h2>{'Labels' if by_label else 'Clusters'}</h2><ul id="legend">{legend}</ul>
<h2>Clusters (commonest tags)</h2><ol id="clusters" style="list-style:none">{clusters}</ol></div>
<script>const CFG={config};
document.querySelectorAll('circle.point').forEach(c=>c.addEventListener('click',e=>{{
  const id=c.dataset.id, path=c.dataset.path;
  if(e.shiftKey&&CFG.search_url){{location.href=CFG.search_url.replace('{{id}}',id);return;}}
  document.getElementById('current').textContent=path;
  const p=document.getElementById('player');
  p.src=CFG.audio_url?CFG.audio_url.replace('{{id}}',id):'file://'+encodeURI(path); p.play().catch(()=>{{}});
}}));</script></body></html>
"""


def write_map(collection, out: str | Path, *, clusters: int | None = None, seed: int = 0) -> CollectionMap:
    """Compute the map of ``collection`` and write it as HTML to ``out``."""
    m = collection_map(collection, clusters=clusters, seed=seed)
    write_bytes_atomic(Path(out), render_html(m, title=f"Map of {Path(collection.root).name}").encode("utf-8"))
    return m

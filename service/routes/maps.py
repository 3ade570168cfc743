"""``GET /api/collections/{name}/map``: the collection's 2-D map as JSON, for the page's Map view.

A thin layer: the projection, clusters, their names and the colours are
:func:`audiosim.engine.search.atlas.collection_map`'s (the same as ``audiosim map``'s HTML page);
:meth:`~audiosim.service.catalog.ServedCollection.map` keeps it per revision. The answer is built
as plain dicts (a map holds up to :data:`~audiosim.service.catalog.MAP_MAX_POINTS` points; the
contract test checks it against :class:`~audiosim.service.schemas.MapResponse`).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiosim.service.catalog import MAP_MAX_POINTS, ServedCollection
from audiosim.service.context import item_urls
from audiosim.service.routes.deps import served
from audiosim.service.schemas import MAP_MAX_CLUSTERS, ErrorResponse, MapResponse

router = APIRouter(tags=["collections"])


@router.get("/api/collections/{name}/map", response_model=MapResponse,
            responses={s: {"model": ErrorResponse} for s in (401, 404, 422)},
            summary=f"The collection in 2-D (UMAP, else PCA + t-SNE), clustered and named; at most {MAP_MAX_POINTS} "
                    "points (a random sample above that); computed once per revision")
async def collection_map(request: Request, s: ServedCollection = Depends(served),
                         clusters: int | None = Query(None, ge=1, le=MAP_MAX_CLUSTERS,
                                                      description="k-means clusters [default: about sqrt(points / 2), "
                                                                  "at most 20]")) -> JSONResponse:
    m, snap = await run_in_threadpool(lambda: s.map(clusters=clusters))
    body = {"collection": s.name, "revision": snap.revision, "max_points": s.map_max_points}
    if m is None:  # an empty collection: an empty map
        return JSONResponse({**body, "method": "none", "coloured_by": "cluster", "total": 0, "shown": 0,
                             "sampled": False, "clusters": [], "legend": [], "points": []})
    entries, colour_of = m.legend()
    sizes = np.bincount(m.cluster, minlength=len(m.cluster_names)).tolist()
    points = []
    for i, ((x, y), c, col, path, label, offset) in enumerate(zip(m.xy.tolist(), m.cluster.tolist(), colour_of.tolist(),
                                                                   m.paths, m.labels, m.offsets_s.tolist())):
        item_id = int(m.ids[i])
        points.append({"id": item_id, "x": x, "y": y, "cluster": c, "colour": col, "label": label,
                       "path": snap.relative(path), "file_name": path.rsplit("/", 1)[-1], "offset_s": offset,
                       "audio_url": item_urls(request, s.name, item_id)["audio_url"]})
    return JSONResponse({**body, "method": m.method, "coloured_by": m.coloured_by, "total": m.total,
                         "shown": len(points), "sampled": m.sampled,
                         "clusters": [{"name": n, "size": k} for n, k in zip(m.cluster_names, sizes)],
                         "legend": [{"name": e.name, "colour": e.colour, "count": e.count} for e in entries],
                         "points": points})


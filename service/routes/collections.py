"""``GET /api/collections`` and ``GET /api/collections/{name}``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from audiosim.service.catalog import ServedCollection
from audiosim.service.context import ServiceContext, base_path
from audiosim.service.routes.deps import context, served
from audiosim.service.schemas import CollectionInfo, CollectionList, CollectionSummary, EmbedderOut, LabelCount

router = APIRouter(tags=["collections"])


@router.get("/api/collections", response_model=CollectionList, summary="The collections this server answers for")
async def list_collections(request: Request, ctx: ServiceContext = Depends(context)) -> CollectionList:
    out = []
    for s in ctx.catalog:
        snap = await run_in_threadpool(s.snapshot)
        c = s.collection
        out.append(CollectionSummary(name=s.name, size=snap.size, revision=snap.revision, embedder=c.embedder.name,
                                     metric=c.metric, url=f"{base_path(request)}/api/collections/{s.name}"))
    return CollectionList(collections=out, write_enabled=ctx.config.allow_write, max_upload_mb=ctx.config.max_upload_mb)


@router.get("/api/collections/{name}", response_model=CollectionInfo,
            summary="One collection: embedder, pooling, metric, size, labels with counts, revision")
async def describe_collection(s: ServedCollection = Depends(served)) -> CollectionInfo:
    snap = await run_in_threadpool(s.snapshot)
    c = s.collection
    e = c.embedder
    return CollectionInfo(
        name=s.name, size=snap.size, revision=snap.revision,
        embedder=EmbedderOut(name=e.name, version=e.version, dim=e.dim, sample_rate=e.sample_rate,
                             weights_sha256=e.weights_sha256),
        pooling=c.pooling.name, metric=c.metric, dim=c.dim,
        segment_s=c.segment_s, segment_hop_s=c.segment_hop_s, index_kind=c.index_kind,
        labels=[LabelCount(label=n, count=k) for n, k in snap.label_counts], unlabelled=snap.unlabelled,
        sources=[Path(p).name for p in c.sources],
    )

"""``GET /api/collections``, ``GET /api/collections/{name}`` and its ``tags`` (what the tag box suggests)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from audiosim.service.catalog import ServedCollection
from audiosim.service.context import ServiceContext, base_path
from audiosim.service.routes.deps import context, served
from audiosim.engine.models.tags import COUNT_MIN_SCORE
from audiosim.engine.search.dedup import DEFAULT_THRESHOLD, find_duplicates
from audiosim.service.schemas import (
    CollectionInfo,
    CollectionList,
    CollectionSummary,
    EmbedderOut,
    LabelCount,
    TagCount,
    TagList,
)

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


@router.get("/api/collections/{name}/duplicates",
            summary="Identical files (stored sha256), groups of near-duplicates and, in segment collections, "
                    "duplicated stretches")
async def list_duplicates(request: Request, s: ServedCollection = Depends(served),
                          threshold: float = Query(DEFAULT_THRESHOLD, ge=-1, le=1,
                                                   description="score at or above which two files are "
                                                               "near-duplicates: the share of their aligned "
                                                               "audio that agrees (verify) or their vectors' "
                                                               "cosine (verify=false)"),
                          verify: bool = Query(True, description="check each candidate pair on its audio "
                                                                 "(false: the vectors alone decide)")) -> dict:
    report = await run_in_threadpool(lambda: find_duplicates(s.collection, threshold=threshold, verify=verify))
    snap = await run_in_threadpool(s.snapshot)
    out = report.to_dict()
    items = f"{base_path(request)}/api/collections/{s.name}/items"
    for g in out["duplicates"]:
        for m in g["members"]:
            m["path"] = snap.relative(m["path"])  # recorded server paths are never sent to clients
            m["audio_url"] = f"{items}/{m['id']}/audio"  # a player per member
    if "unreadable" in out:  # decoder messages name server paths: say how many, not where
        out["unreadable"] = []
    return {"collection": s.name, **out}


@router.get("/api/collections/{name}/tags", response_model=TagList,
            summary="The classifier tags a collection holds (with counts) and every class name one can search by")
async def list_tags(s: ServedCollection = Depends(served),
                    min_score: float = Query(COUNT_MIN_SCORE, ge=0, le=1,
                                             description="count a tag only at this score or above")) -> TagList:
    counts, classes = await run_in_threadpool(lambda: s.tags(min_score=min_score))
    return TagList(collection=s.name, tagged=s.collection.class_map is not None, min_score=min_score,
                   tags=[TagCount(name=n, count=c) for n, c in counts], classes=list(classes))

"""The page at ``/`` and its ``/favicon.ico``, ``GET /healthz`` (open, for probes), ``GET /metrics`` (Prometheus text)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse

from audiosim import __version__
from audiosim.service.context import ServiceContext
from audiosim.service.routes.deps import context, require_token
from audiosim.service.schemas import Health

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/healthz", response_model=Health, tags=["system"],
            summary="Liveness, and the revision of each collection (not listed when the server has a token)")
async def healthz(ctx: ServiceContext = Depends(context)) -> Health:
    # open to probes, so with a token it does not name the collections
    revisions = {s.name: s.collection.revision for s in ctx.catalog} if ctx.config.token is None else {}
    return Health(status="ok", version=__version__, uptime_s=round(time.time() - ctx.started, 3), collections=revisions)


@router.get("/metrics", tags=["system"], dependencies=[Depends(require_token)],
            responses={200: {"content": {"text/plain": {}}}}, summary="Prometheus metrics")
async def metrics(ctx: ServiceContext = Depends(context)) -> Response:
    body, content_type = ctx.metrics.exposition()
    return Response(content=body, media_type=content_type)

"""``POST /api/collections/{name}/search``: by uploaded clip (multipart) or by id, ids, vector(s) (JSON).

An upload is decoded, embedded and searched on the bounded inference pool (503 + Retry-After
when it is full); id and vector searches need no model and run on the ordinary thread pool.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from audiosim.engine.search.regions import Region
from audiosim.service.catalog import ServedCollection
from audiosim.service.context import ServiceContext, item_urls
from audiosim.service.errors import BadRequest, UnsupportedMedia
from audiosim.service.routes.deps import context, served
from audiosim.service.schemas import ErrorResponse, QueryOut, SearchRequest, SearchResponse, UploadSearchForm

router = APIRouter(tags=["search"])

_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the query clip, in any format `audiosim index` reads"},
        **{k: v for k, v in UploadSearchForm.model_json_schema()["properties"].items()},
    },
}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            "application/json": {"schema": SearchRequest.model_json_schema()},
        },
    }
}
_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 415, 422, 503)}


def _form_fields(form) -> dict:
    fields = {}
    for key in form.keys():
        if key == "file":
            continue
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if key == "label":
            fields[key] = [v for v in values if v.strip()] or None
        elif values and values[-1] != "":
            fields[key] = values[-1]
    return fields


def _validate(model, data):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
        raise BadRequest(f"invalid search request: {problems}") from None


API_TAGS = 5  # a hit's strongest tags in the answer (the collection stores 10)


def _hits(request: Request, name: str, snapshot, hits) -> list[dict]:
    """Hits (or regions, which read like their best hit) as plain :class:`HitOut` dicts.

    Built from the library's own values without pydantic models: on a by-id search, constructing
    and dumping 60 small models cost as much as the search itself (the contract test checks the
    answer against the schema).
    """
    out = []
    for h in hits:
        path = str(h.path)
        end_s = h.end_s if isinstance(h, Region) else None
        out.append({
            "rank": h.rank, "id": h.id, "score": float(h.score), "label": h.label, "path": snapshot.relative(path),
            "file_name": path.rsplit("/", 1)[-1], "offset_s": h.offset_s, "duration_s": h.duration_s,
            "end_s": end_s, "segments": len(h.hits) if isinstance(h, Region) else None,
            "tags": [{"name": t.name, "score": t.score} for t in h.tags[:API_TAGS]] if h.tags else None,
            "shared_tags": [t.name for t in h.shared_tags] if h.tags else None,
            **item_urls(request, name, h.id, start_s=h.offset_s if end_s is not None else None, end_s=end_s)})
    return out


@router.post("/api/collections/{name}/search", response_model=SearchResponse, responses=_ERRORS, openapi_extra=_OPENAPI,
             summary="Search by an uploaded clip (multipart field 'file') or by id / ids / vector / vectors / a tag alone (JSON)")
async def search(request: Request, s: ServedCollection = Depends(served),
                 ctx: ServiceContext = Depends(context)) -> SearchResponse:
    t0 = time.perf_counter()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    queue_ms = None
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=64)
        future = None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest("a multipart search needs the clip in a file field named 'file'")
            opts = _validate(UploadSearchForm, _form_fields(form))
            future = ctx.pool.submit(s.search_upload, upload.file, upload.filename, filters=opts,
                                     start_s=opts.start_s, end_s=opts.end_s)
            (hits, timing, snapshot), queue_ms = await asyncio.wrap_future(future)
        finally:
            if future is None or future.done():
                await form.close()
            else:  # the client went away: the worker still reads the upload, close it after
                future.add_done_callback(lambda _f: upload.file.close())
        query = QueryOut(kind="upload", file_name=upload.filename, start_s=opts.start_s, end_s=opts.end_s)
        k = opts.k
    elif ctype in ("application/json", ""):
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
        req = _validate(SearchRequest, body if body is not None else {})
        kind = req.kind
        value = getattr(req, kind)
        if kind == "text":  # the text encoder runs on the bounded inference pool, like an upload's model
            future = ctx.pool.submit(s.search, filters=req, text=value)
            (hits, timing, snapshot), queue_ms = await asyncio.wrap_future(future)
        else:
            query_arg = ({"id": value} if kind == "id" else {"id": list(value)} if kind == "ids" else {} if kind == "tag"
                         else {"vector": _array(value)})
            hits, timing, snapshot = await run_in_threadpool(lambda: s.search(filters=req, **query_arg))
        query = QueryOut(kind=kind, id=req.id, ids=req.ids, tag=req.tag if kind == "tag" else None,
                         text=req.text if kind == "text" else None)
        k = req.k
    else:
        raise UnsupportedMedia(f"send the search as multipart/form-data (a clip in field 'file') or application/json "
                               f"(id, ids, vector, vectors or text), not {ctype}")
    batch = query.kind in ("ids", "vectors")
    t = {"queue_ms": queue_ms, "decode_ms": timing.decode_ms, "embed_ms": timing.embed_ms,
         "search_ms": timing.search_ms, "total_ms": timing.total_ms}
    ctx.metrics.observe_search(t)
    body = {
        "collection": s.name, "revision": snapshot.revision, "k": k, "query": query.model_dump(mode="json"),
        "hits": None if batch else _hits(request, s.name, snapshot, hits),
        "results": [_hits(request, s.name, snapshot, row) for row in hits] if batch else None,
        "timing": {**t, "server_ms": (time.perf_counter() - t0) * 1000.0},
    }
    # the library's own values, answered as is: FastAPI does not validate the response model again
    return JSONResponse(body)


def _array(values):
    try:
        return np.asarray(values, dtype=np.float32)
    except ValueError:
        raise BadRequest("vectors must all have the same length (the collection's dim)") from None

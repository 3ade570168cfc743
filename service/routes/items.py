"""``GET .../items/{id}``, its ``audio`` (Range-capable) and ``spectrogram.png``; ``DELETE .../items/{id}``.

``audio`` and ``spectrogram.png`` take an optional span of the item's file (``?start=S&end=E``, seconds),
checked here (400 for an empty, reversed or too long span, or one past the file's end).

Items are addressed only by integer id: the audio comes from the path the collection recorded,
never from a client-given path (see :mod:`audiosim.service.media` for what is sent).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

import audiosim
from audiosim.service.catalog import ItemView, ServedCollection
from audiosim.service.context import ServiceContext, item_urls
from audiosim.service.errors import BadRequest, Forbidden
from audiosim.service.media import (
    BROWSER_TYPES,
    MAX_SPAN_S,
    SPECTROGRAM_SR,
    encode_wav,
    file_duration,
    mono_at,
    read_span,
    require_file,
    serves_original,
    spectrogram_png,
)
from audiosim.service.ranges import file_etag, ranged_response
from audiosim.service.routes.deps import context, served
from audiosim.service.schemas import DeleteOut, ErrorResponse, ItemOut
from audiosim.service.security import served_file_allowed

router = APIRouter(tags=["items"])
ItemId = PathParam(ge=0, le=2**62, description="the item's id (as search hits give it)")
Start = Query(None, ge=0, le=1e7, description="with end: answer this span of the item's file instead (seconds from "
                                               "the file's start, as a region hit's offset_s gives it)")
End = Query(None, gt=0, le=1e7, description="the span's end (seconds from the file's start; a region hit's end_s)")
CACHE = "private, max-age=3600"
Span = tuple[float, float]  # (offset_s, duration_s) in the item's file


def _item_out(request: Request, s: ServedCollection, it: ItemView) -> ItemOut:
    urls = item_urls(request, s.name, it.id)
    return ItemOut(id=it.id, path=it.rel_path, file_name=it.file_name, label=it.label, offset_s=it.offset_s,
                   duration_s=it.duration_s, content_sha256=it.content_sha256, segment=it.segment,
                   audio="original" if serves_original(Path(it.path), segment=it.segment) else "wav",
                   audio_url=urls["audio_url"], spectrogram_url=urls["spectrogram_url"])


@router.get("/api/collections/{name}/items/{item_id}", response_model=ItemOut,
            responses={404: {"model": ErrorResponse}}, summary="One item's metadata")
async def get_item(request: Request, item_id: int = ItemId, s: ServedCollection = Depends(served)) -> ItemOut:
    it = await run_in_threadpool(s.item, item_id)
    return _item_out(request, s, it)


def _span(it: ItemView, start: float | None, end: float | None) -> Span | None:
    """The ``(offset_s, duration_s)`` a request's ``start``/``end`` ask for, checked; ``None`` for the item itself."""
    if start is None and end is None:
        return None
    total = file_duration(require_file(it.path))
    start = 0.0 if start is None else float(start)
    end = (total if total is not None else start + MAX_SPAN_S) if end is None else float(end)
    if end <= start:
        raise BadRequest(f"end ({end:g} s) must be after start ({start:g} s)")
    if total is not None:
        if start >= total:
            raise BadRequest(f"start ({start:g} s) is past the end of {it.file_name} ({total:.2f} s long)")
        end = min(end, total)
    if end - start > MAX_SPAN_S + 1e-9:
        raise BadRequest(f"a span is at most {MAX_SPAN_S:g} s long; ask for less than {end - start:g} s with start and end")
    return start, end - start


def _span_key(span: Span | None) -> str:
    return "" if span is None else f"{span[0]:.6f}+{span[1]:.6f}"


def _encoded_wav(ctx: ServiceContext, s: ServedCollection, it: ItemView, span: Span | None = None) -> bytes:
    key = ("wav", s.name, it.id, it.content_sha256, _span_key(span))
    data = ctx.wav_cache.get(key)
    if data is None:
        path = require_file(it.path)
        if span is not None:
            samples, sr = read_span(path, offset_s=span[0], duration_s=span[1])
            if not len(samples):
                raise BadRequest(f"the span {span[0]:g}-{span[0] + span[1]:g} s holds no audio of {it.file_name}")
        else:
            samples, sr = read_span(path, offset_s=it.offset_s if it.segment else 0.0,
                                    duration_s=it.duration_s if it.segment else None)
        data = encode_wav(samples, sr)
        ctx.wav_cache.put(key, data)
    return data


@router.head("/api/collections/{name}/items/{item_id}/audio", include_in_schema=False)
@router.get("/api/collections/{name}/items/{item_id}/audio",
            responses={200: {"content": {"audio/*": {}}}, 206: {"description": "the requested byte range"},
                       404: {"model": ErrorResponse}, 410: {"model": ErrorResponse}, 416: {"model": ErrorResponse}},
            summary="The item's audio, with HTTP Range support (the segment only, for segment items; "
                    "start/end: that span of its file, e.g. a region)")
async def item_audio(request: Request, item_id: int = ItemId, start: float | None = Start, end: float | None = End,
                     s: ServedCollection = Depends(served), ctx: ServiceContext = Depends(context)) -> Response:
    it = await run_in_threadpool(s.item, item_id)
    served_file_allowed(it.path, ctx.config.root)
    path = require_file(it.path)
    span = await run_in_threadpool(_span, it, start, end)
    headers = {"Cache-Control": CACHE, "Content-Disposition": f'inline; filename="{_ascii_name(it, span)}"'}
    if span is None and serves_original(path, segment=it.segment):
        return ranged_response(request, media_type=BROWSER_TYPES[path.suffix.lower()],
                               etag=file_etag(path, it.content_sha256), path=path, extra_headers=headers)
    data = await run_in_threadpool(_encoded_wav, ctx, s, it, span)
    etag = f'"{(it.content_sha256 or "nohash")[:16]}-{it.id}-{_span_key(span)}wav"'
    return ranged_response(request, media_type="audio/wav", etag=etag, data=data, extra_headers=headers)


def _ascii_name(it: ItemView, span: Span | None = None) -> str:
    stem = it.file_name.rsplit(".", 1)[0]
    if span is not None:
        stem = f"{stem}_{span[0]:.2f}-{span[0] + span[1]:.2f}s"
    elif it.segment:
        stem = f"{stem}_{it.offset_s:.2f}s"
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in stem)
    original = span is None and serves_original(Path(it.path), segment=it.segment)
    ext = it.file_name.rsplit(".", 1)[-1] if original else "wav"
    return f"{safe}.{ext}"


def _spectrogram(ctx: ServiceContext, s: ServedCollection, it: ItemView, width: int, height: int,
                 span: Span | None = None) -> bytes:
    key = ("png", s.name, it.id, it.content_sha256, width, height, _span_key(span))
    png = ctx.spectrogram_cache.get(key)
    if png is None:
        offset_s, duration_s = span if span is not None else (it.offset_s, it.duration_s)
        samples, sr = read_span(require_file(it.path), offset_s=offset_s, duration_s=duration_s)
        png = spectrogram_png(mono_at(samples, sr, SPECTROGRAM_SR), SPECTROGRAM_SR, width=width, height=height)
        ctx.spectrogram_cache.put(key, png)
    return png


@router.get("/api/collections/{name}/items/{item_id}/spectrogram.png",
            responses={200: {"content": {"image/png": {}}}, 304: {"description": "not modified"},
                       404: {"model": ErrorResponse}, 410: {"model": ErrorResponse}},
            summary="A log-mel spectrogram picture of the item's audio (cached; start/end: that span of its file)")
async def item_spectrogram(request: Request, item_id: int = ItemId,
                           width: int = Query(320, ge=32, le=1600), height: int = Query(96, ge=16, le=512),
                           start: float | None = Start, end: float | None = End,
                           s: ServedCollection = Depends(served), ctx: ServiceContext = Depends(context)) -> Response:
    it = await run_in_threadpool(s.item, item_id)
    served_file_allowed(it.path, ctx.config.root)
    span = await run_in_threadpool(_span, it, start, end)
    etag = f'"{(it.content_sha256 or "nohash")[:16]}-{it.id}-{width}x{height}{_span_key(span)}"'
    headers = {"ETag": etag, "Cache-Control": CACHE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    png = await run_in_threadpool(_spectrogram, ctx, s, it, width, height, span)
    return Response(content=png, media_type="image/png", headers=headers)


@router.delete("/api/collections/{name}/items/{item_id}", response_model=DeleteOut,
               responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
               summary="Delete an item (needs --allow-write)")
async def delete_item(item_id: int = ItemId, s: ServedCollection = Depends(served),
                      ctx: ServiceContext = Depends(context)) -> DeleteOut:
    if not ctx.config.allow_write:
        raise Forbidden("this server is read-only; start it with --allow-write --root DIR to delete items")
    await run_in_threadpool(s.item, item_id)

    def delete() -> DeleteOut:
        removed = audiosim.open_collection(s.root).delete(ids=[item_id])
        snap = s.snapshot()
        return DeleteOut(id=item_id, deleted=removed, revision=snap.revision)

    return await run_in_threadpool(delete)

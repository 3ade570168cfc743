"""``GET .../items/{id}``, its ``audio`` (Range-capable) and ``spectrogram.png``; ``DELETE .../items/{id}``.

Items are addressed only by integer id: the audio comes from the path the collection recorded,
never from a client-given path (see :mod:`audiosim.service.media` for what is sent).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from audiosim.service.catalog import ItemView, ServedCollection
from audiosim.service.context import ServiceContext, item_urls
from audiosim.service.errors import Forbidden
from audiosim.service.media import (BROWSER_TYPES, SPECTROGRAM_SR, encode_wav, mono_at, read_span, require_file,
                                    serves_original, spectrogram_png)
from audiosim.service.ranges import file_etag, ranged_response
from audiosim.service.routes.deps import context, served
from audiosim.service.schemas import DeleteOut, ErrorResponse, ItemOut

router = APIRouter(tags=["items"])
ItemId = PathParam(ge=0, le=2**62, description="the item's id (as search hits give it)")
CACHE = "private, max-age=3600"


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


def _encoded_wav(ctx: ServiceContext, s: ServedCollection, it: ItemView) -> bytes:
    key = ("wav", s.name, it.id, it.content_sha256)
    data = ctx.wav_cache.get(key)
    if data is None:
        path = require_file(it.path)
        samples, sr = read_span(path, offset_s=it.offset_s if it.segment else 0.0,
                                duration_s=it.duration_s if it.segment else None)
        data = encode_wav(samples, sr)
        ctx.wav_cache.put(key, data)
    return data


@router.head("/api/collections/{name}/items/{item_id}/audio", include_in_schema=False)
@router.get("/api/collections/{name}/items/{item_id}/audio",
            responses={200: {"content": {"audio/*": {}}}, 206: {"description": "the requested byte range"},
                       404: {"model": ErrorResponse}, 410: {"model": ErrorResponse}, 416: {"model": ErrorResponse}},
            summary="The item's audio, with HTTP Range support (the segment only, for segment items)")
async def item_audio(request: Request, item_id: int = ItemId, s: ServedCollection = Depends(served),
                     ctx: ServiceContext = Depends(context)) -> Response:
    it = await run_in_threadpool(s.item, item_id)
    path = require_file(it.path)
    headers = {"Cache-Control": CACHE, "Content-Disposition": f'inline; filename="{_ascii_name(it)}"'}
    if serves_original(path, segment=it.segment):
        return ranged_response(request, media_type=BROWSER_TYPES[path.suffix.lower()],
                               etag=file_etag(path, it.content_sha256), path=path, extra_headers=headers)
    data = await run_in_threadpool(_encoded_wav, ctx, s, it)
    etag = f'"{(it.content_sha256 or "nohash")[:16]}-{it.id}-wav"'
    return ranged_response(request, media_type="audio/wav", etag=etag, data=data, extra_headers=headers)


def _ascii_name(it: ItemView) -> str:
    stem = it.file_name.rsplit(".", 1)[0] if not it.segment else f"{it.file_name.rsplit('.', 1)[0]}_{it.offset_s:.2f}s"
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in stem)
    ext = it.file_name.rsplit(".", 1)[-1] if serves_original(Path(it.path), segment=it.segment) else "wav"
    return f"{safe}.{ext}"


def _spectrogram(ctx: ServiceContext, s: ServedCollection, it: ItemView, width: int, height: int) -> bytes:
    key = ("png", s.name, it.id, it.content_sha256, width, height)
    png = ctx.spectrogram_cache.get(key)
    if png is None:
        samples, sr = read_span(require_file(it.path), offset_s=it.offset_s, duration_s=it.duration_s)
        png = spectrogram_png(mono_at(samples, sr, SPECTROGRAM_SR), SPECTROGRAM_SR, width=width, height=height)
        ctx.spectrogram_cache.put(key, png)
    return png


@router.get("/api/collections/{name}/items/{item_id}/spectrogram.png",
            responses={200: {"content": {"image/png": {}}}, 304: {"description": "not modified"},
                       404: {"model": ErrorResponse}, 410: {"model": ErrorResponse}},
            summary="A log-mel spectrogram picture of the item's audio (cached)")
async def item_spectrogram(request: Request, item_id: int = ItemId,
                           width: int = Query(320, ge=32, le=1600), height: int = Query(96, ge=16, le=512),
                           s: ServedCollection = Depends(served), ctx: ServiceContext = Depends(context)) -> Response:
    it = await run_in_threadpool(s.item, item_id)
    etag = f'"{(it.content_sha256 or "nohash")[:16]}-{it.id}-{width}x{height}"'
    headers = {"ETag": etag, "Cache-Control": CACHE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    png = await run_in_threadpool(_spectrogram, ctx, s, it, width, height)
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
        import audiosim

        removed = audiosim.open_collection(s.root).delete(ids=[item_id])
        snap = s.snapshot()
        return DeleteOut(id=item_id, deleted=removed, revision=snap.revision)

    return await run_in_threadpool(delete)

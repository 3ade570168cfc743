"""``create_app(config)``: the FastAPI application behind ``audiosim serve``.

Layers, outermost first: :class:`~audiosim.service.metrics.MetricsMiddleware` (counts and times
every request), CORS (only with ``--cors``), :class:`~audiosim.service.security.UploadLimitMiddleware`
(413 above ``--max-upload-mb``), then the routers: ``/api`` (token-checked when the server has
a token: collections and their map, search, items, jobs), ``/metrics`` (token-checked), and the open ``/``,
``/favicon.ico``, ``/static``, ``/healthz``, ``/docs`` and ``/redoc`` (their scripts served from
``/docs-assets``, never a CDN). Every error is answered as JSON ``{"error": {"status", "code", "message"}}``
(see :mod:`audiosim.service.errors`); an unexpected exception is logged with its traceback and answered 500 without internals.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from audiosim import __version__
from audiosim.errors import AudiosimError
from audiosim.service.catalog import Catalog
from audiosim.service.config import ServeConfig

log = logging.getLogger("audiosim.serve")
STATIC = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's JavaScript and CSS, from the fastapi-offline package


def create_app(config: ServeConfig, *, catalog: Catalog | None = None):
    """The app for ``config``; opens (and warms) every collection unless a ``catalog`` is given."""

    from fastapi import Depends
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from audiosim.service.context import ServiceContext
    from audiosim.service.errors import error_body, status_for
    from audiosim.service.jobs import JobRegistry
    from audiosim.service.media import LruBytes
    from audiosim.service.metrics import MetricsMiddleware, ServiceMetrics
    from audiosim.service.routes import collections, items, jobs, maps, search, system
    from audiosim.service.routes.deps import require_token
    from audiosim.service.security import SameOriginPagesMiddleware, UploadLimitMiddleware
    from audiosim.service.workers import InferencePool

    config = config.check()
    catalog = catalog if catalog is not None else Catalog.open(config)
    pool = InferencePool(workers=config.workers, queue=config.queue, max_wait_s=config.queue_wait_s,
                         retry_after_s=config.retry_after_s)

    def sizes() -> dict[str, tuple[int, int]]:
        return {s.name: (len(s.collection), s.collection.revision) for s in catalog}

    ctx = ServiceContext(config=config, catalog=catalog, pool=pool, jobs=JobRegistry(),
                         wav_cache=LruBytes(max_bytes=int(config.segment_cache_mb * 1024 * 1024)),
                         spectrogram_cache=LruBytes(max_bytes=256 * 1024 * 1024, max_entries=config.spectrogram_cache),
                         metrics=ServiceMetrics(pool_stats=pool.stats, collection_sizes=sizes))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        ctx.close()

    # /docs (Swagger UI) and /redoc from the JavaScript fastapi-offline ships, not a CDN: they work offline,
    # and the page makes no request to another host (no validator badge, no web fonts)
    app = FastAPIOffline(title="audiosim", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url="/redoc",
                         static_url=DOCS_ASSETS, favicon_url="favicon.ico", swagger_ui_parameters={"validatorUrl": None},
                         description="Audio similarity search over audiosim collections: upload a clip or give an item "
                                     "id, get the most similar items, listen to them.")
    app.state.audiosim = ctx

    def answer(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
        return JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)

    @app.exception_handler(AudiosimError)
    async def audiosim_error(_request, exc: AudiosimError):
        status, code = status_for(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        return answer(status, code, str(exc), getattr(exc, "headers", None), suggestions=getattr(exc, "suggestions", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in exc.errors())
        return answer(422, "invalid_request", f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; the API is described at /docs"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return answer(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def too_deep(_request, exc: RecursionError):  # a JSON body nested thousands deep
        return answer(400, "bad_request", "the request body is nested too deeply to parse; send flat JSON "
                                          "(lists of numbers or strings)")

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):
        log.exception("unexpected error", exc_info=exc)
        return answer(500, "internal", "internal server error; the server log has the details")

    api = [Depends(require_token)]
    for module in (collections, maps, search, items, jobs):
        app.include_router(module.router, dependencies=api)
    app.include_router(system.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(UploadLimitMiddleware, max_mb=config.max_upload_mb)
    app.add_middleware(SameOriginPagesMiddleware, paths=("/", "/docs", "/redoc"))
    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors), allow_methods=["GET", "HEAD", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Range"],
                           expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "Retry-After", "ETag"])
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    return app

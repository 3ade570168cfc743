"""FastAPI dependencies: the app's context, a served collection by name, the token check.

They are ``async`` because they only read memory: FastAPI runs a plain ``def`` dependency on
its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from audiosim.service.catalog import ServedCollection
from audiosim.service.context import ServiceContext
from audiosim.service.security import TOKEN_COOKIE, check_token

bearer = HTTPBearer(auto_error=False, description="the server's --token (only when it was started with one)")


async def context(request: Request) -> ServiceContext:
    return request.app.state.audiosim


async def served(name: str, ctx: ServiceContext = Depends(context)) -> ServedCollection:
    return ctx.catalog.get(name)


async def require_token(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer),
                        ctx: ServiceContext = Depends(context)) -> None:
    check_token(ctx.config.token, request.headers.get("authorization"), request.cookies.get(TOKEN_COOKIE))

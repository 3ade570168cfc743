"""Errors of the service and how every error becomes an HTTP answer.

Each deliberate error derives from :class:`audiosim.errors.AudiosimError`. :class:`ApiError`
carries its HTTP status and a stable machine-readable ``code``; the app answers every one as
JSON ``{"error": {"code": ..., "message": ..., "status": ...}}``. Library errors are mapped by
:func:`status_for`: undecodable audio is 415, unusable audio 422, a locked collection 409, a
unknown item 404, a collection that kept changing while it reloaded 503, a broken collection 500, any other ``AudiosimError`` (a bad option or query) 400. Anything else is
a bug: 500 with a generic message (the traceback goes to the server log).
"""

from __future__ import annotations

from audiosim.errors import (
    AudioDecodeError,
    AudioError,
    AudiosimError,
    CollectionChangingError,
    CollectionError,
    CollectionLockedError,
    ItemNotFoundError,
    ServeConfigError,
)


class ApiError(AudiosimError):
    """An error answered to the client with ``status`` and ``code``; ``headers`` go into the answer."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class UnknownTag(ApiError):
    """A tag that is not one of the collection's class names; ``suggestions`` go into the answer."""

    status, code = 400, "unknown_tag"

    def __init__(self, message: str, *, suggestions=()) -> None:
        super().__init__(message)
        self.suggestions = list(suggestions)


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="audiosim"'})


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Gone(ApiError):
    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedMedia(ApiError):
    status, code = 415, "unsupported_media"


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, headers={"Content-Range": f"bytes */{size}"})


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class Busy(ApiError):
    """The inference queue is full (or a request waited past the queue bound): 503 with ``Retry-After``."""

    status, code = 503, "busy"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


def status_for(error: Exception) -> tuple[int, str]:
    """(HTTP status, code) for an error raised while answering a request."""

    if isinstance(error, ApiError):
        return error.status, error.code
    if isinstance(error, AudioDecodeError):
        return 415, "unsupported_media"
    if isinstance(error, AudioError):
        return 422, "unusable_audio"
    if isinstance(error, CollectionLockedError):
        return 409, "collection_locked"
    if isinstance(error, ItemNotFoundError):
        return 404, "not_found"
    if isinstance(error, CollectionChangingError):
        return 503, "collection_changing"
    if isinstance(error, CollectionError):
        return 500, "collection_error"
    if isinstance(error, AudiosimError):
        return 400, "bad_request"
    return 500, "internal"


def error_body(status: int, code: str, message: str, *, suggestions: list[str] | None = None) -> dict:
    body = {"status": status, "code": code, "message": message}
    if suggestions is not None:
        body["suggestions"] = suggestions
    return {"error": body}

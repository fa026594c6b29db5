"""The one table from errors to web answers: a page for browsers, JSON under /api/.

Nothing of an exception's text reaches the client except our own ApiError sentences;
the log gets the type and, for our own errors, the message (which never holds a
secret). The database's errors arrive translated (cryptmail.db); a failed statement,
like one that found no database, answers 503: the operator's log has the cause.
"""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from cryptmail.errors import (
    CryptmailError,
    DatabaseError,
    KdfBusy,
    StoreUnavailable,
    TooManyAttempts,
)
from cryptmail.web._api_input import ApiError
from cryptmail.web._context import web_context

log = logging.getLogger(__name__)

_PAGE_MESSAGES = {404: "error.not_found", 405: "error.not_found", 503: "error.unavailable"}
_API_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "too_many_attempts",
    503: "unavailable",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _answer(
    request: Request,
    status: int,
    headers: dict[str, str] | None = None,
    *,
    api_message: str | None = None,
    page_message: str | None = None,
) -> Response:
    if _is_api(request):
        code = _API_CODES.get(status, "internal_error")
        body = {"error": code, "message": api_message or _api_message(status)}
        return JSONResponse(body, status_code=status, headers=headers)
    try:
        pages = web_context(request).pages
    except RuntimeError:
        return PlainTextResponse("error", status_code=status, headers=headers)
    message = page_message or _PAGE_MESSAGES.get(status, "error.internal")
    response = pages.error(request, status, message)
    response.headers.update(headers or {})
    return response


def _api_message(status: int) -> str:
    if status == 503:
        return "The database did not answer; try again in a minute."
    if status >= 500:
        return "The server failed; the operator's log says why."
    return "The request was not understood."


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return exc.response()


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    return _answer(request, exc.status_code, dict(exc.headers or {}))


async def store_unavailable(request: Request, exc: Exception) -> Response:
    log.error("web %s: the database did not answer (%s)", request.url.path, type(exc).__name__)
    return _answer(request, 503, {"retry-after": "60"})


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds)))}


async def too_many_attempts(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyAttempts)  # noqa: S101 - registered for it only
    return _answer(
        request,
        429,
        _retry_after(exc.retry_after_s),
        api_message="Too many failed attempts for this address or from this client; "
        "try again after the seconds in Retry-After.",
        page_message="error.too_many_attempts",
    )


async def kdf_busy(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KdfBusy)  # noqa: S101 - registered for it only
    log.warning("web %s refused: the Argon2 queue is full", request.url.path)
    return _answer(
        request,
        503,
        _retry_after(exc.retry_after_s),
        api_message="The server is checking too many passwords at once; try again in a moment.",
        page_message="error.busy",
    )


async def cryptmail_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, StoreUnavailable):
        return await store_unavailable(request, exc)
    log.error("web %s failed: %s: %s", request.url.path, type(exc).__name__, exc)
    return _answer(request, 500)


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("web %s failed: %s", request.url.path, type(exc).__name__)
    return _answer(request, 500)


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    TooManyAttempts: too_many_attempts,
    KdfBusy: kdf_busy,
    HTTPException: http_error,
    DatabaseError: store_unavailable,
    CryptmailError: cryptmail_error,
    Exception: server_error,
}

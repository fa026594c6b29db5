"""The one table from errors to web answers: a page for browsers, JSON under /api/.

Nothing of an exception's text reaches the client except our own ApiError sentences;
the log gets the type and, for our own errors, the message (which never holds a
secret). The database's errors arrive translated (cryptmail.db); a failed statement,
like one that found no database, answers 503: the operator's log has the cause.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from cryptmail.errors import CryptmailError, DatabaseError, StoreUnavailable
from cryptmail.web._api_input import ApiError
from cryptmail.web._context import web_context

log = logging.getLogger(__name__)

_PAGE_MESSAGES = {404: "error.not_found", 405: "error.not_found", 503: "error.unavailable"}
_API_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    503: "unavailable",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _answer(request: Request, status: int, headers: dict[str, str] | None = None) -> Response:
    if _is_api(request):
        code = _API_CODES.get(status, "internal_error")
        body = {"error": code, "message": _api_message(status)}
        return JSONResponse(body, status_code=status, headers=headers)
    try:
        pages = web_context(request).pages
    except RuntimeError:
        return PlainTextResponse("error", status_code=status, headers=headers)
    response = pages.error(request, status, _PAGE_MESSAGES.get(status, "error.internal"))
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
    HTTPException: http_error,
    DatabaseError: store_unavailable,
    CryptmailError: cryptmail_error,
    Exception: server_error,
}

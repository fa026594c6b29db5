"""Every route of the web app, in one list.

A path with several methods is one Route whose endpoint picks the handler by method,
so a wrong method gets 405 with an `Allow` header naming all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cryptmail.web import (
    _api_app_passwords,
    _api_password,
    _pages_account,
    _pages_app_passwords,
    _pages_password,
    _pages_recover,
    _pages_recovery_code,
    _pages_sign_in,
)
from cryptmail.web._health import healthz, readyz
from cryptmail.web._openapi import openapi_yaml

Endpoint = Callable[[Request], Awaitable[Response]]

API = "/api/v1"


def _route(path: str, **handlers: Endpoint) -> Route:
    """One route for `path`; `handlers` maps HTTP methods (GET, POST, ...) to endpoints."""

    async def by_method(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, by_method, methods=list(handlers))


ROUTES: list[BaseRoute] = [
    _route("/", GET=_pages_sign_in.home),
    _route("/sign-in", GET=_pages_sign_in.sign_in_form, POST=_pages_sign_in.sign_in),
    _route("/sign-out", POST=_pages_sign_in.sign_out),
    _route("/forgot", GET=_pages_recover.recover_form, POST=_pages_recover.recover_account),
    _route("/account", GET=_pages_account.account),
    _route("/account/log", GET=_pages_account.security_log_form, POST=_pages_account.security_log),
    _route("/account/password", GET=_pages_password.password_form, POST=_pages_password.change),
    _route(
        "/account/recovery-code",
        GET=_pages_recovery_code.recovery_code_form,
        POST=_pages_recovery_code.renew,
    ),
    _route(
        "/account/app-passwords",
        GET=_pages_app_passwords.app_passwords,
        POST=_pages_app_passwords.create,
    ),
    _route("/account/app-passwords/revoke", POST=_pages_app_passwords.revoke),
    _route("/healthz", GET=healthz),
    _route("/readyz", GET=readyz),
    _route(f"{API}/openapi.yaml", GET=openapi_yaml),
    _route(f"{API}/password", POST=_api_password.change),
    _route(f"{API}/recover", POST=_api_password.recover_account),
    _route(
        f"{API}/app-passwords",
        GET=_api_app_passwords.list_all,
        POST=_api_app_passwords.create,
    ),
    _route(f"{API}/app-passwords/{{name}}", DELETE=_api_app_passwords.revoke),
    Mount("/static", StaticFiles(packages=[("cryptmail.web", "static")]), name="static"),
]

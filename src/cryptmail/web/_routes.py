"""Every route of the web app, in one list."""

from __future__ import annotations

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
from cryptmail.web._openapi import openapi_yaml

API = "/api/v1"

ROUTES: list[BaseRoute] = [
    Route("/", _pages_sign_in.home, methods=["GET"]),
    Route("/sign-in", _pages_sign_in.sign_in_form, methods=["GET"]),
    Route("/sign-in", _pages_sign_in.sign_in, methods=["POST"]),
    Route("/sign-out", _pages_sign_in.sign_out, methods=["POST"]),
    Route("/forgot", _pages_recover.recover_form, methods=["GET"]),
    Route("/forgot", _pages_recover.recover_account, methods=["POST"]),
    Route("/account", _pages_account.account, methods=["GET"]),
    Route("/account/log", _pages_account.security_log_form, methods=["GET"]),
    Route("/account/log", _pages_account.security_log, methods=["POST"]),
    Route("/account/password", _pages_password.password_form, methods=["GET"]),
    Route("/account/password", _pages_password.change, methods=["POST"]),
    Route("/account/recovery-code", _pages_recovery_code.recovery_code_form, methods=["GET"]),
    Route("/account/recovery-code", _pages_recovery_code.renew, methods=["POST"]),
    Route("/account/app-passwords", _pages_app_passwords.app_passwords, methods=["GET"]),
    Route("/account/app-passwords", _pages_app_passwords.create, methods=["POST"]),
    Route("/account/app-passwords/revoke", _pages_app_passwords.revoke, methods=["POST"]),
    Route(f"{API}/openapi.yaml", openapi_yaml, methods=["GET"]),
    Route(f"{API}/password", _api_password.change, methods=["POST"]),
    Route(f"{API}/recover", _api_password.recover_account, methods=["POST"]),
    Route(f"{API}/app-passwords", _api_app_passwords.create, methods=["POST"]),
    Route(f"{API}/app-passwords", _api_app_passwords.list_all, methods=["GET"]),
    Route(f"{API}/app-passwords/{{name}}", _api_app_passwords.revoke, methods=["DELETE"]),
    Mount("/static", StaticFiles(packages=[("cryptmail.web", "static")]), name="static"),
]

"""Rendering pages: Jinja2 templates in the browser's language, with one CSRF token.

Every value is HTML-escaped (autoescape on for everything), undefined names are errors,
and each rendered page gets one fresh single-use CSRF token, shared by the forms on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from cryptmail.web._i18n import Catalogs, negotiate
from cryptmail.web._sessions import SCOPE_KEY, SessionSlot

NOTICES: Final = frozenset(
    {
        "password_changed",
        "password_changed_credentials_dropped",
        "signed_out",
        "app_password_revoked",
        "recovered",
        "session_ended",
    }
)
"""Notices a redirect may ask for with `?done=`; anything else is ignored."""


def format_time(value: datetime) -> str:
    """Stored times are naive UTC."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


class Pages:
    def __init__(self, *, min_password_length: int) -> None:
        self.min_password_length = min_password_length
        self.catalogs = Catalogs()
        self.env = Environment(
            loader=PackageLoader("cryptmail.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["time"] = format_time

    def render(
        self,
        request: Request,
        template: str,
        values: Mapping[str, object] | None = None,
        *,
        status: int = 200,
    ) -> HTMLResponse:
        lang = negotiate(request.headers.get("accept-language"))
        found = request.scope.get(SCOPE_KEY)
        slot = found if isinstance(found, SessionSlot) else None
        token: list[str] = []

        def csrf_token() -> str:
            if slot is None:
                raise RuntimeError("a form was rendered outside the session middleware")
            if not token:
                token.append(slot.issue_csrf())
            return token[0]

        notice = request.query_params.get("done", "")
        html = self.env.get_template(template).render(
            {
                "t": self.catalogs.translator(lang),
                "lang": lang,
                "csrf_token": csrf_token,
                "signed_in": slot is not None and slot.user is not None,
                "notice": notice if notice in NOTICES else "",
                "error": "",
                "min_length": self.min_password_length,
                **(values or {}),
            }
        )
        headers = {"content-language": lang, "vary": "Accept-Language, Cookie"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, request: Request, status: int, message: str) -> Response:
        """The error page with catalog message `message`."""
        return self.render(request, "error.html", {"message": message}, status=status)

    def reject_form(self, request: Request) -> Response:
        """The answer to a form with a missing, foreign or used CSRF token."""
        return self.error(request, 403, "error.csrf")

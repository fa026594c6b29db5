"""The recovery code: whether one exists, and a new one (after the password).

Users whose keys were made at their first login have none until their next sign-in
makes one (`_pages_sign_in`); one whose code a re-key dropped, or whose sign-in lost a
race, creates one here (the account page asks them to). Renewing makes the old code
useless; the new one is shown once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import has_recovery_code, renew_recovery_code
from cryptmail.secret import Password
from cryptmail.web._attempts import unlock
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._signed_in import current_user, follow_own_rekey, to_sign_in


async def recovery_code_form(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    has_code = await has_recovery_code(context.engine, user.id)
    return context.pages.render(request, "recovery_code.html", {"has_code": has_code})


async def renew(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    ip = client_ip(request)
    form = await read_form(request)
    had_code = await has_recovery_code(context.engine, user.id)
    try:
        password = Password.from_str(text(form, "password"))
        unlocked = await unlock(context, user.email, password, ip, "recovery code renewal")
    except (BadInput, AuthenticationFailed):
        values = {"has_code": had_code, "error": "error.password"}
        return context.pages.render(request, "recovery_code.html", values, status=400)
    follow_own_rekey(request, unlocked)
    code = await renew_recovery_code(context.engine, unlocked, context.config.crypto, client_ip=ip)
    del unlocked
    reason = "renewed" if had_code else "created"
    return context.pages.render(
        request, "code.html", {"code": code, "reason": reason, "next": "/account"}
    )

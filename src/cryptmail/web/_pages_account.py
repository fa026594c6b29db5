"""The account overview, and the security log.

The overview needs no key: fingerprints, curves and dates of the key pairs, whether new
mail is encrypted, whether a recovery code exists, the app passwords. The log's client
addresses are sealed to the user's key (a stolen database shows only kinds and times),
so showing the log asks for the password, unlocks for that one request and forgets.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import has_recovery_code, list_app_passwords, list_events, list_key_pairs
from cryptmail.secret import Password
from cryptmail.web._attempts import unlock
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._signed_in import current_user, follow_own_rekey, to_sign_in

LOG_LENGTH = 100


async def account(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    async with context.engine.connect() as conn:
        key_pairs = await list_key_pairs(conn, user.id)
    values = {
        "user": user,
        "key_pairs": key_pairs,
        "has_code": await has_recovery_code(context.engine, user.id),
        "app_passwords": await list_app_passwords(context.engine, user.id),
        "importing": None if context.imports is None else await context.imports.running(user.id),
    }
    return context.pages.render(request, "account.html", values)


async def security_log(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    form = await read_form(request)
    try:
        password = Password.from_str(text(form, "password"))
        unlocked = await unlock(context, user.email, password, client_ip(request), "log")
    except (BadInput, AuthenticationFailed):
        values = {"events": None, "error": "error.password"}
        return context.pages.render(request, "log.html", values, status=400)
    follow_own_rekey(request, unlocked)
    async with context.engine.connect() as conn:
        events = await list_events(conn, unlocked, limit=LOG_LENGTH)
    del unlocked
    return context.pages.render(request, "log.html", {"events": events})


async def security_log_form(request: Request) -> Response:
    if await current_user(request) is None:
        return to_sign_in()
    return web_context(request).pages.render(request, "log.html", {"events": None})

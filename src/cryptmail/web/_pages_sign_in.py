"""Signing in and out.

Signing in unlocks the key once, to prove the password, and keeps nothing of it: the
session then holds only the user's id and address. A wrong address and a wrong
password get the same answer, after the same work.

A user without a recovery code (keys made at the first login of an ISPmail row, which
may have been over IMAP) gets one while the key is unlocked, shown once, as after
`user add`; IMAP logins tell them to sign in here until they do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import ensure_recovery_code
from cryptmail.secret import Password
from cryptmail.web._attempts import unlock
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._sessions import slot_of
from cryptmail.web._signed_in import generation_at_sign_in, see_other, to_sign_in

MAX_ADDRESS = 254


async def home(request: Request) -> Response:
    if slot_of(request.scope).user is not None:
        return see_other("/account")
    return to_sign_in()


async def sign_in_form(request: Request) -> Response:
    if slot_of(request.scope).user is not None:
        return see_other("/account")
    return web_context(request).pages.render(request, "sign_in.html", {"address": ""})


async def sign_in(request: Request) -> Response:
    context = web_context(request)
    form = await read_form(request)
    address = ""
    try:
        address = text(form, "address", max_length=MAX_ADDRESS).strip()
        password = Password.from_str(text(form, "password"))
        generation = await generation_at_sign_in(request, address)
        account = await unlock(context, address, password, client_ip(request), "sign-in")
    except (BadInput, AuthenticationFailed):
        values = {"address": address, "error": "error.sign_in"}
        return context.pages.render(request, "sign_in.html", values, status=400)
    if account.credential_generation is not None:  # this sign-in re-keyed
        generation = account.credential_generation
    slot_of(request.scope).sign_in(account.user.id, account.user.email, generation=generation)
    code = await ensure_recovery_code(
        context.engine, account, context.config.crypto, client_ip=client_ip(request)
    )
    if context.imports is not None:
        # The one exception: the import of the user's staged old mail holds the account
        # (and the Dovecot keys this password opens) until it ends.
        await context.imports.after_login(account, password)
    del account  # the unlocked key lives no longer than this request
    if code is not None:
        values = {"code": code, "reason": "created", "next": "/account"}
        return context.pages.render(request, "code.html", values)
    return see_other("/account")


async def sign_out(request: Request) -> Response:
    slot_of(request.scope).sign_out()
    return to_sign_in("signed_out")

"""App passwords: list, create (after the password; shown once), revoke.

Revoking asks first: the list's button posts the name, and the answer is a page that
says what revoking does (the devices using it stop getting mail) with the button that
posts it again with `confirm=yes`. Only that second post revokes.

Revoking needs no key: it deletes one slot, and the app password stops working at the
next login. It moves the credential generation: every IMAP session of the user ends
and so does every other web session; this one stays signed in (`keep_signed_in`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import (
    AppPasswordExists,
    AppPasswordNotFound,
    AuthenticationFailed,
    KeySlotError,
)
from cryptmail.keys import add_app_password, list_app_passwords, revoke_app_password
from cryptmail.secret import Password
from cryptmail.users import User
from cryptmail.web._attempts import unlock
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._signed_in import (
    current_user,
    follow_own_rekey,
    keep_signed_in,
    see_other,
    to_sign_in,
)

MAX_NAME = 64


async def _list_page(
    request: Request, user: User, *, error: str = "", name: str = "", status: int = 200
) -> Response:
    context = web_context(request)
    values = {
        "app_passwords": await list_app_passwords(context.engine, user.id),
        "error": error,
        "name": name,
    }
    return context.pages.render(request, "app_passwords.html", values, status=status)


async def app_passwords(request: Request) -> Response:
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    return await _list_page(request, user)


async def create(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    ip = client_ip(request)
    form = await read_form(request)
    name = ""
    try:
        name = text(form, "name", max_length=MAX_NAME).strip()
        password = Password.from_str(text(form, "password"))
    except BadInput:
        return await _list_page(request, user, error="error.app_name", name=name, status=400)
    try:
        unlocked = await unlock(context, user.email, password, ip, "app password creation")
    except AuthenticationFailed:
        return await _list_page(request, user, error="error.password", name=name, status=400)
    follow_own_rekey(request, unlocked)
    try:
        secret = await add_app_password(
            context.engine, unlocked, name, context.config.crypto, client_ip=ip
        )
    except AppPasswordExists:
        return await _list_page(request, user, error="error.app_exists", name=name, status=400)
    except KeySlotError:
        return await _list_page(request, user, error="error.app_name", name=name, status=400)
    finally:
        del unlocked
    return context.pages.render(request, "app_password.html", {"name": name, "secret": secret})


async def revoke(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    form = await read_form(request)
    try:
        name = text(form, "name", max_length=MAX_NAME)
        if form.get("confirm") != "yes":
            known = {app.name for app in await list_app_passwords(context.engine, user.id)}
            if name not in known:
                raise AppPasswordNotFound(name)
            return context.pages.render(request, "app_password_revoke.html", {"name": name})
        await revoke_app_password(context.engine, user.id, name, client_ip=client_ip(request))
    except (BadInput, AppPasswordNotFound):
        return await _list_page(request, user, error="error.app_missing", status=400)
    # The revocation ends the user's other sessions (IMAP included), not this one.
    if not await keep_signed_in(request, user):
        return to_sign_in()
    return see_other("/account/app-passwords?done=app_password_revoked")

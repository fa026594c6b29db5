"""Change password: the old one once, the new one twice.

keys.change_password re-locks the key and changes the hash in one transaction, and
drops IMAP's cached credentials of the user. Every other web session of the user ends
(here at once, in other processes at their next request: the generation moved) and so
does every IMAP session; this browser stays signed in, with a fresh session id bound to
the new generation (`keep_signed_in`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import change_password
from cryptmail.secret import Password
from cryptmail.web._attempts import throttled
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._new_password import form_problem
from cryptmail.web._signed_in import current_user, keep_signed_in, see_other, to_sign_in


async def password_form(request: Request) -> Response:
    if await current_user(request) is None:
        return to_sign_in()
    return web_context(request).pages.render(request, "password.html")


async def change(request: Request) -> Response:
    context = web_context(request)
    user = await current_user(request)
    if user is None:
        return to_sign_in()
    ip = client_ip(request)
    form = await read_form(request)

    def again(error: str) -> Response:
        return context.pages.render(request, "password.html", {"error": error}, status=400)

    try:
        old = text(form, "old")
        new = text(form, "new")
        repeat = text(form, "repeat", required=False)
    except BadInput:
        return again("error.password")
    problem = form_problem(context, user.email, new, repeat)
    if problem:
        return again(problem)

    async def attempt() -> tuple[tuple[str, str], ...]:
        return await change_password(
            context.engine,
            user.email,
            Password.from_str(old),
            Password.from_str(new),
            context.config.crypto,
            client_ip=ip,
            cache=context.accounts,
        )

    try:
        dropped = await throttled(context, user.email, ip, "password change", attempt)
    except AuthenticationFailed:
        return again("error.password")
    context.sessions.drop_user(user_id=user.id)
    if not await keep_signed_in(request, user, new_id=True):
        return to_sign_in()
    if dropped:
        # A recovery code or app passwords made before slot version 2 and never used
        # since could not follow the re-key: say so at once, not never.
        return see_other("/account?done=password_changed_credentials_dropped")
    return see_other("/account?done=password_changed")

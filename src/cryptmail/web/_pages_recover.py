"""Forgot password: address, recovery code and a new password.

The form says, before anything happens, that without the password and the recovery
code nobody can open the mail. On success the code is used up and a new one is shown
once; every web session of the user ends, and IMAP's cached credentials of the user are
dropped. A wrong address and a wrong code get the same answer after the same work.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import recover
from cryptmail.secret import Password
from cryptmail.web._attempts import throttled
from cryptmail.web._context import client_ip, web_context
from cryptmail.web._forms import BadInput, read_form, text
from cryptmail.web._new_password import form_problem
from cryptmail.web._pages_sign_in import MAX_ADDRESS

MAX_CODE = 128


async def recover_form(request: Request) -> Response:
    return web_context(request).pages.render(request, "recover.html", {"address": ""})


async def recover_account(request: Request) -> Response:
    context = web_context(request)
    ip = client_ip(request)
    form = await read_form(request)
    address = ""

    def again(error: str) -> Response:
        values = {"address": address, "error": error}
        return context.pages.render(request, "recover.html", values, status=400)

    try:
        address = text(form, "address", max_length=MAX_ADDRESS).strip()
        code = text(form, "code", max_length=MAX_CODE)
        new = text(form, "new")
        repeat = text(form, "repeat", required=False)
    except BadInput:
        return again("error.recover")
    problem = form_problem(context, address, new, repeat)
    if problem:
        return again(problem)

    async def attempt() -> str:
        return await recover(
            context.engine,
            address,
            code,
            Password.from_str(new),
            context.config.crypto,
            client_ip=ip,
            cache=context.accounts,
        )

    try:
        new_code = await throttled(context, address, ip, "recovery", attempt)
    except AuthenticationFailed:
        return again("error.recover")
    context.sessions.drop_user(address=address)
    return context.pages.render(
        request, "code.html", {"code": new_code, "reason": "recovered", "next": "/sign-in"}
    )

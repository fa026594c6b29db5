"""API: create (password shown once), list and revoke app passwords.

Each call proves the login password (never an app password: an app password must not
make or remove others): in the body for POST, as HTTP Basic for GET and DELETE.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cryptmail.errors import (
    AppPasswordExists,
    AppPasswordNotFound,
    AuthenticationFailed,
    KeySlotError,
)
from cryptmail.keys import (
    UnlockedAccount,
    add_app_password,
    list_app_passwords,
    revoke_app_password,
)
from cryptmail.secret import Password
from cryptmail.web._api_input import ApiError, Field, auth_failed, basic_credentials, read_fields
from cryptmail.web._api_password import ADDRESS, SECRET
from cryptmail.web._attempts import unlock
from cryptmail.web._context import client_ip, web_context

NAME = Field(64)


async def _unlock(request: Request, address: str, password: str, what: str) -> UnlockedAccount:
    try:
        return await unlock(
            web_context(request),
            address.strip(),
            Password.from_str(password),
            client_ip(request),
            what,
        )
    except AuthenticationFailed:
        raise auth_failed() from None


async def create(request: Request) -> Response:
    context = web_context(request)
    fields = await read_fields(request, {"address": ADDRESS, "password": SECRET, "name": NAME})
    unlocked = await _unlock(request, fields["address"], fields["password"], "API app password")
    try:
        secret = await add_app_password(
            context.engine,
            unlocked,
            fields["name"],
            context.config.crypto,
            client_ip=client_ip(request),
        )
    except AppPasswordExists:
        raise ApiError(
            409, "app_password_exists", "An app password with this name exists."
        ) from None
    except KeySlotError as exc:
        raise ApiError(422, "invalid_name", str(exc)) from None
    finally:
        del unlocked
    return JSONResponse({"name": fields["name"].strip(), "password": secret}, status_code=201)


async def list_all(request: Request) -> Response:
    context = web_context(request)
    address, password = basic_credentials(request)
    unlocked = await _unlock(request, address, password, "API app password list")
    user_id = unlocked.user.id
    del unlocked
    items = [
        {"name": info.name, "created_at": info.created_at.isoformat() + "Z"}
        for info in await list_app_passwords(context.engine, user_id)
    ]
    return JSONResponse({"app_passwords": items})


async def revoke(request: Request) -> Response:
    context = web_context(request)
    name = request.path_params["name"]
    address, password = basic_credentials(request)
    unlocked = await _unlock(request, address, password, "API app password revocation")
    user_id = unlocked.user.id
    try:
        await revoke_app_password(
            context.engine, user_id, name, client_ip=client_ip(request), account=unlocked
        )
    except AppPasswordNotFound:
        raise ApiError(404, "app_password_not_found", "No app password has this name.") from None
    finally:
        del unlocked
    return Response(status_code=204)

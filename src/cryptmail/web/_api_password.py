"""API: change the password (old and new), recover with the code, and the admin reset.

The admin token sets a password without the old one only where no key depends on it
(`keys.reset_password`: a user with crypt = 0 and no key pair yet); any other user is
refused (409) and needs the old password or the recovery code.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cryptmail.errors import (
    AuthenticationFailed,
    PasswordRejected,
    PasswordResetRefused,
    UnknownUser,
)
from cryptmail.keys import change_password, recover, reset_password
from cryptmail.secret import Password
from cryptmail.web._api_input import ApiError, Field, auth_failed, bearer_matches, read_fields
from cryptmail.web._attempts import address_tag, throttled
from cryptmail.web._context import WebContext, client_ip, web_context
from cryptmail.web._new_password import check_new

log = logging.getLogger(__name__)

ADDRESS = Field(254)
SECRET = Field(1024)
CODE = Field(128)


def _check_rules(context: WebContext, address: str, new: Password) -> None:
    try:
        check_new(context, address, new)
    except PasswordRejected as exc:
        raise ApiError(422, "password_rejected", str(exc)) from None


async def change(request: Request) -> Response:
    context = web_context(request)
    ip = client_ip(request)
    admin = bearer_matches(request, context.admin_token)
    fields = await read_fields(
        request, {"address": ADDRESS, "old": Field(1024, required=False), "new": SECRET}
    )
    address, new = fields["address"].strip(), Password.from_str(fields["new"])
    if "old" not in fields:
        if admin is None:
            raise ApiError(400, "invalid_request", "The field 'old' is missing.")
        await _admin_reset(context, request, address, new, admin)
        return Response(status_code=204)
    _check_rules(context, address, new)
    old = Password.from_str(fields["old"])

    async def attempt() -> None:
        await change_password(
            context.engine,
            address,
            old,
            new,
            context.config.crypto,
            client_ip=ip,
            cache=context.accounts,
        )

    try:
        await throttled(context, address, ip, "API password change", attempt)
    except AuthenticationFailed:
        raise auth_failed() from None
    context.sessions.drop_user(address=address)
    return Response(status_code=204)


async def _admin_reset(
    context: WebContext, request: Request, address: str, new: Password, admin: bool
) -> None:
    ip = client_ip(request)
    # Per client address only, so a stranger's failures cannot slow the real admin.
    throttle_key = f"admin-token@{ip}"
    reservation = await context.throttle.acquire(throttle_key, ip)
    if not admin:
        context.throttle.failed(reservation)
        log.warning("API admin password reset refused from %s: wrong admin token", ip)
        raise ApiError(
            401,
            "authentication_failed",
            "The admin token is wrong.",
            {"www-authenticate": 'Bearer realm="cryptmail"'},
        )
    context.throttle.succeeded(reservation)
    try:
        user = await reset_password(
            context.engine,
            address,
            new,
            context.config.crypto,
            client_ip=ip,
            check_new=lambda _user: _check_rules(context, address, new),
        )
    except UnknownUser:
        raise ApiError(404, "unknown_user", "No user has this address.") from None
    except PasswordResetRefused:
        raise ApiError(
            409,
            "key_locked_by_password",
            "This user's mail key is locked by their password: setting a password without "
            "the old one would lock them out of their mail for good. Change it with the old "
            "password (field 'old'), or with the recovery code (POST /api/v1/recover).",
        ) from None
    context.sessions.drop_user(user_id=user.id)
    log.info("API admin password reset for user id %d (crypt 0, no keys) from %s", user.id, ip)


async def recover_account(request: Request) -> Response:
    context = web_context(request)
    ip = client_ip(request)
    fields = await read_fields(request, {"address": ADDRESS, "code": CODE, "new": SECRET})
    address, new = fields["address"].strip(), Password.from_str(fields["new"])
    _check_rules(context, address, new)

    async def attempt() -> str:
        return await recover(
            context.engine,
            address,
            fields["code"],
            new,
            context.config.crypto,
            client_ip=ip,
            cache=context.accounts,
        )

    try:
        code = await throttled(context, address, ip, "API recovery", attempt)
    except AuthenticationFailed:
        raise auth_failed() from None
    context.sessions.drop_user(address=address)
    log.info("API recovery done for address %s", address_tag(address))
    return JSONResponse({"recovery_code": code})

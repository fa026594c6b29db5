"""Who is signed in: the session's user, re-read from the database on every request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse

from cryptmail.errors import UnknownUser
from cryptmail.users import User, get_user_by_id
from cryptmail.web._context import web_context
from cryptmail.web._sessions import slot_of


async def current_user(request: Request) -> User | None:
    """The signed-in user, or None. A session whose user is gone (or renamed) ends."""
    slot = slot_of(request.scope)
    session = slot.user
    if session is None or session.user_id is None:
        return None
    try:
        async with web_context(request).engine.connect() as conn:
            user = await get_user_by_id(conn, session.user_id)
    except UnknownUser:
        slot.sign_out()
        return None
    if user.email.lower() != session.address:
        slot.sign_out()
        return None
    return user


def to_sign_in(notice: str = "") -> RedirectResponse:
    return RedirectResponse("/sign-in" + (f"?done={notice}" if notice else ""), status_code=303)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)

"""Who is signed in: the session's user, re-read from the database on every request.

With the user, each request reads the account's credential generation (one indexed row,
on the same connection): a session signed in before a password change, a recovery, an
app-password revocation or a re-key, made in any process, is signed out at its next
request (the sign-in page, and the cookie cleared). The session that made such a change
itself stays signed in: `keep_signed_in` binds it to the generation its change made.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse

from cryptmail.errors import UnknownUser
from cryptmail.keys import UnlockedAccount, read_generation, read_generation_of
from cryptmail.users import User, get_user_by_id
from cryptmail.web._context import web_context
from cryptmail.web._sessions import slot_of

log = logging.getLogger(__name__)


async def current_user(request: Request) -> User | None:
    """The signed-in user, or None. A session whose user is gone (or renamed) ends, and
    so does one whose credentials changed since it signed in."""
    slot = slot_of(request.scope)
    session = slot.user
    if session is None or session.user_id is None:
        return None
    try:
        async with web_context(request).engine.connect() as conn:
            user = await get_user_by_id(conn, session.user_id)
            generation = await read_generation(conn, session.user_id)
    except UnknownUser:
        slot.sign_out()
        return None
    if user.email.lower() != session.address:
        slot.sign_out()
        return None
    if generation != session.generation:
        log.info("web session of user id %d signed out: credentials changed", user.id)
        slot.sign_out()
        return None
    return user


async def generation_at_sign_in(request: Request, address: str) -> int:
    """The credential generation of `address`, read before its credential is checked:
    a change committed while the check runs then signs the new session out. 0 for a user
    whose keys the sign-in is about to make (an unknown address too: it fails anyway)."""
    async with web_context(request).engine.connect() as conn:
        generation = await read_generation_of(conn, address)
    return 0 if generation is None else generation


async def keep_signed_in(request: Request, user: User, *, new_id: bool = False) -> bool:
    """After a credential change this session made (which moves the generation by one):
    bind the session to the new generation, with a fresh session id if `new_id`, so it
    stays signed in while every other session of the user ends. If the generation moved
    further, another change came in between: this session ends too. Whether it stayed.
    """
    slot = slot_of(request.scope)
    session = slot.user
    if session is None:
        return False
    async with web_context(request).engine.connect() as conn:
        generation = await read_generation(conn, user.id)
    if generation != session.generation + 1:
        slot.sign_out()
        return False
    if new_id:
        slot.sign_in(user.id, user.email, generation=generation)
    else:
        session.generation = generation
    return True


def follow_own_rekey(request: Request, account: UnlockedAccount) -> None:
    """After an unlock on a signed-in page: if that unlock made the re-key a keyless
    revocation left pending, it moved the generation itself, and this session (which
    holds no key) must follow it rather than be signed out by its own password. Only
    when that re-key was the one move since the session's generation; any other change
    in between still ends it at its next request."""
    session = slot_of(request.scope).user
    moved = account.credential_generation
    if session is None or moved is None or session.user_id != account.user.id:
        return
    if session.generation == moved - 1:
        session.generation = moved


def to_sign_in(notice: str = "") -> RedirectResponse:
    return RedirectResponse("/sign-in" + (f"?done={notice}" if notice else ""), status_code=303)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)

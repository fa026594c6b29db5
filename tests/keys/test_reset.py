"""reset_password: the admin reset, only where no key depends on the password."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import PasswordRejected, PasswordResetRefused, UnknownUser
from cryptmail.keys import reset_password
from cryptmail.users import User, add_user, get_user, verify_password
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw, snapshot

NEW = "set by the admin"


async def test_resets_a_plain_user_without_keys(engine: AsyncEngine, crypto: CryptoConfig) -> None:
    async with engine.begin() as conn:
        await add_user(conn, "plain@example.org", other_tool_hash(PASSWORD), crypt=0)
    checked: list[User] = []
    user = await reset_password(
        engine, "plain@example.org", pw(NEW), crypto, check_new=checked.append
    )
    assert [u.id for u in checked] == [user.id]
    async with engine.connect() as conn:
        stored = (await get_user(conn, "plain@example.org")).password_hash
    assert stored.startswith("{ARGON2ID}") and verify_password(stored, pw(NEW))


@pytest.mark.parametrize("case", ["keys", "crypt 2"])
async def test_refused_where_a_key_depends_on_the_password(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, case: str
) -> None:
    if case == "keys":
        await make_user("user@example.org", crypt=0)
    else:
        async with engine.begin() as conn:
            await add_user(conn, "user@example.org", other_tool_hash(PASSWORD), crypt=2)
    before = await snapshot(engine)
    with pytest.raises(PasswordResetRefused):
        await reset_password(engine, "user@example.org", pw(NEW), crypto)
    assert await snapshot(engine) == before


async def test_unknown_user_and_refused_rules_change_nothing(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    with pytest.raises(UnknownUser):
        await reset_password(engine, "nobody@example.org", pw(NEW), crypto)
    async with engine.begin() as conn:
        await add_user(conn, "plain@example.org", other_tool_hash(PASSWORD), crypt=0)
    before = await snapshot(engine)

    def refuse(_user: User) -> None:
        raise PasswordRejected("too short")

    with pytest.raises(PasswordRejected):
        await reset_password(engine, "plain@example.org", pw(NEW), crypto, check_new=refuse)
    assert await snapshot(engine) == before

"""Change password: old once, new twice; the key is re-locked; other sessions end."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.crypto import SlotLabel
from cryptmail.crypto._slots_v1 import lock_slot_v1
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, unlock_account
from cryptmail.keys._slots import slots_of
from cryptmail.users import get_user, verify_password
from web.conftest import (
    ALICE,
    NEW_PASSWORD,
    PASSWORD,
    RecordingAccounts,
    RecordingThrottle,
    pw,
    sign_in,
    submit,
)


def _form(
    old: str = PASSWORD, new: str = NEW_PASSWORD, repeat: str | None = None
) -> dict[str, str]:
    return {"old": old, "new": new, "repeat": new if repeat is None else repeat}


async def test_page_needs_sign_in(client: httpx.AsyncClient) -> None:
    assert (await client.get("/account/password")).headers["location"] == "/sign-in"


async def test_page_warns_and_shows_the_rules(signed_in: httpx.AsyncClient) -> None:
    page = (await signed_in.get("/account/password")).text
    assert "nobody can open your mail again" in page
    assert "At least 10 characters" in page
    assert 'autocomplete="new-password"' in page


async def test_change_password(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await submit(signed_in, "/account/password", _form())
    assert response.status_code == 303
    assert response.headers["location"] == "/account?done=password_changed"
    page = await signed_in.get(response.headers["location"])
    assert "Your password is changed." in page.text  # still signed in, fresh session

    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await unlock_account(engine, ALICE, pw(NEW_PASSWORD), config.crypto)
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
    assert verify_password(user.password_hash, pw(NEW_PASSWORD))


async def test_change_ends_other_sessions(
    signed_in: httpx.AsyncClient, app: object, alice: NewAccount
) -> None:
    transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        await sign_in(other)
        assert (await other.get("/account")).status_code == 200
        await submit(signed_in, "/account/password", _form())
        assert (await other.get("/account")).headers["location"] == "/sign-in"
    assert (await signed_in.get("/account")).status_code == 200


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (_form(old="wrong password"), "The password is wrong."),
        (_form(repeat="different passphrase"), "The two new passwords are not the same."),
        (_form(new="tooshort"), "The new password was not accepted."),
        (_form(new="aaaaaaaaaaaaaaa"), "The new password was not accepted."),
        (_form(new="my alice passphrase"), "The new password was not accepted."),
        ({"old": PASSWORD}, "The password is wrong."),
    ],
)
async def test_refused_changes_change_nothing(
    signed_in: httpx.AsyncClient,
    engine: AsyncEngine,
    config: Config,
    throttle: RecordingThrottle,
    form: dict[str, str],
    message: str,
) -> None:
    response = await submit(signed_in, "/account/password", form)
    assert response.status_code == 400
    assert message in response.text
    await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)


async def test_wrong_old_password_is_throttled(
    signed_in: httpx.AsyncClient, throttle: RecordingThrottle
) -> None:
    await submit(signed_in, "/account/password", _form(old="wrong password"))
    await submit(signed_in, "/account/password", _form(old="wrong again!"))
    assert throttle.waits[-1][0] == ALICE and throttle.waits[-1][2] > 0


async def test_change_drops_imap_cached_credentials(
    signed_in: httpx.AsyncClient, accounts: RecordingAccounts, alice: NewAccount
) -> None:
    """An IMAP session holds alice's account; after the change only the new password
    logs in, to the new generation's keys (the change re-keyed the account), and the
    open session keeps the account it holds."""
    held = await accounts.acquire(ALICE, pw(PASSWORD))
    response = await submit(signed_in, "/account/password", _form())
    assert response.status_code == 303
    assert accounts.forgotten == [ALICE]
    assert accounts.live_accounts == 1
    with pytest.raises(AuthenticationFailed):
        await accounts.acquire(ALICE, pw(PASSWORD))
    again = await accounts.acquire(ALICE, pw(NEW_PASSWORD))
    assert again is not held and again.generation == held.generation + 1


async def test_failed_change_forgets_nothing(
    signed_in: httpx.AsyncClient, accounts: RecordingAccounts
) -> None:
    response = await submit(signed_in, "/account/password", _form(old="not the password"))
    assert response.status_code == 400
    assert accounts.forgotten == []


async def test_a_recovery_code_the_change_could_not_carry_is_announced(
    signed_in: httpx.AsyncClient, alice: NewAccount, engine: AsyncEngine, config: Config
) -> None:
    """A recovery code made before slot version 2 and never used since cannot follow the
    re-key: the page says so at once instead of leaving the user to find out when they
    need it."""
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    assert alice.recovery_code is not None
    async with engine.begin() as conn:
        slot = next(s for s in await slots_of(conn, account.user.id) if s.kind == "recovery")
        label = SlotLabel(account.account_uuid, "recovery", "", 0)
        record = lock_slot_v1(
            account.account_key.reveal(),
            alice.recovery_code.replace("-", "").encode(),
            config.crypto.argon2,
            label.v1_context(),
        )
        await conn.execute(
            update(t.cm_key_slots).where(t.cm_key_slots.c.id == slot.id).values(record=record)
        )
        # Version-1 slots predate the MACs over key rows (migration 0008).
        await conn.execute(
            update(t.cm_accounts)
            .where(t.cm_accounts.c.user_id == account.user.id)
            .values(key_mac=None, key_mac_slots=None, delivery_mac=None)
        )
    response = await submit(signed_in, "/account/password", _form())
    assert response.status_code == 303
    assert response.headers["location"] == "/account?done=password_changed_credentials_dropped"
    page = await signed_in.get(response.headers["location"])
    assert "no longer work: make a new recovery code now" in page.text

"""Forgot password: the warning comes first; the code is used up and a new one shown
once; the old password, the old code and every session stop working."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, recover, unlock_account
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

WARNING = "Without your password and your recovery code nobody can open your mail again"


def _form(code: str, new: str = NEW_PASSWORD, repeat: str | None = None) -> dict[str, str]:
    return {"address": ALICE, "code": code, "new": new, "repeat": new if repeat is None else repeat}


async def test_the_warning_comes_before_anything_happens(client: httpx.AsyncClient) -> None:
    page = (await client.get("/forgot")).text
    assert WARNING in page
    assert page.index(WARNING) < page.index("<form")
    assert "used up" in page


async def test_recover_shows_a_new_code_once(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    assert alice.recovery_code is not None
    response = await submit(client, "/forgot", _form(alice.recovery_code))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    new_code = page.split('<p class="secret"><code>')[1].split("</code>")[0]
    assert new_code and new_code != alice.recovery_code
    assert "It is shown only this once." in page
    assert WARNING in page
    assert 'href="/sign-in"' in page

    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await unlock_account(engine, ALICE, pw(NEW_PASSWORD), config.crypto)
    with pytest.raises(AuthenticationFailed):  # the old code is used up
        await recover(
            engine, ALICE, alice.recovery_code, pw("yet another passphrase"), config.crypto
        )
    await recover(engine, ALICE, new_code, pw("yet another passphrase"), config.crypto)


async def test_wrong_code_and_unknown_address_look_the_same(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    wrong = await submit(client, "/forgot", _form("AAAAA-BBBBB-CCCCC-DDDDD"))
    unknown = await submit(
        client, "/forgot", {**_form(alice.recovery_code or ""), "address": "bob@example.org"}
    )
    assert wrong.status_code == unknown.status_code == 400
    for response in (wrong, unknown):
        assert "The address or the recovery code is wrong." in response.text
    assert len(throttle.waits) == 2 and throttle.waits[1][2] > 0


@pytest.mark.parametrize(
    ("new", "repeat", "message"),
    [
        (NEW_PASSWORD, "something else entirely", "The two new passwords are not the same."),
        ("short", "short", "The new password was not accepted."),
        ("alice@example.org!!", "alice@example.org!!", "The new password was not accepted."),
    ],
)
async def test_new_password_rules_before_the_code_is_tried(
    client: httpx.AsyncClient,
    alice: NewAccount,
    throttle: RecordingThrottle,
    new: str,
    repeat: str,
    message: str,
) -> None:
    response = await submit(client, "/forgot", _form(alice.recovery_code or "", new, repeat))
    assert response.status_code == 400
    assert message in response.text
    assert throttle.waits == []  # the code was not tried, nor used up


async def test_recovery_ends_every_session(
    client: httpx.AsyncClient, app: object, alice: NewAccount
) -> None:
    await sign_in(client)
    transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        response = await submit(other, "/forgot", _form(alice.recovery_code or ""))
        assert response.status_code == 200
    assert (await client.get("/account")).headers["location"] == "/sign-in"


async def test_recover_drops_imap_cached_credentials(
    client: httpx.AsyncClient, accounts: RecordingAccounts, alice: NewAccount
) -> None:
    await accounts.acquire(ALICE, pw(PASSWORD))
    assert alice.recovery_code is not None
    response = await submit(client, "/forgot", _form("wrong-code"))
    assert response.status_code == 400
    assert accounts.forgotten == []
    response = await submit(client, "/forgot", _form(alice.recovery_code))
    assert response.status_code == 200
    assert accounts.forgotten == [ALICE]
    with pytest.raises(AuthenticationFailed):
        await accounts.acquire(ALICE, pw(PASSWORD))

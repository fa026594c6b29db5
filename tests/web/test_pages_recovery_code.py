"""Renewing the recovery code needs the password; the new code is shown once and the
old one stops working."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, has_recovery_code, recover
from web.conftest import ALICE, PASSWORD, pw, submit


async def test_page_says_whether_a_code_exists(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    page = (await signed_in.get("/account/recovery-code")).text
    assert "You have a recovery code." in page
    assert "the old code stops working" in page
    async with engine.begin() as conn:
        await conn.execute(delete(t.cm_key_slots).where(t.cm_key_slots.c.kind == "recovery"))
    page = (await signed_in.get("/account/recovery-code")).text
    assert "You have no recovery code yet: if you forget your password" in page
    assert "Make a recovery code</button>" in page


async def test_renew(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await submit(signed_in, "/account/recovery-code", {"password": PASSWORD})
    assert response.status_code == 200
    page = response.text
    code = page.split('<p class="secret"><code>')[1].split("</code>")[0]
    assert code != alice.recovery_code
    assert "<h1>Your new recovery code</h1>" in page
    assert "It is shown only this once." in page
    assert "Your previous recovery code no longer works." in page
    with pytest.raises(AuthenticationFailed):
        await recover(
            engine, ALICE, alice.recovery_code or "", pw("new passphrase 1"), config.crypto
        )
    await recover(engine, ALICE, code, pw("new passphrase 2"), config.crypto)


async def test_create_when_missing(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(t.cm_key_slots).where(t.cm_key_slots.c.kind == "recovery"))
    response = await submit(signed_in, "/account/recovery-code", {"password": PASSWORD})
    assert response.status_code == 200
    assert "<h1>Your recovery code</h1>" in response.text
    assert "previous recovery code" not in response.text
    assert await has_recovery_code(engine, alice.user.id)


async def test_wrong_password_renews_nothing(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await submit(signed_in, "/account/recovery-code", {"password": "wrong password"})
    assert response.status_code == 400
    assert "The password is wrong." in response.text
    await recover(engine, ALICE, alice.recovery_code or "", pw("new passphrase 3"), config.crypto)

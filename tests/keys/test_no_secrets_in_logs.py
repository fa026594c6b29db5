"""Run every credential path at DEBUG (SQL echo included) and scan every log record and
every error message for the test passwords, codes and app passwords: zero hits."""

from __future__ import annotations

import logging
import traceback

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import normalize_code
from cryptmail.errors import CryptmailError
from cryptmail.keys import (
    UnlockedAccounts,
    add_app_password,
    change_password,
    create_user,
    recover,
    renew_recovery_code,
    revoke_app_password,
    unlock_account,
)
from cryptmail.logs import JsonFormatter
from cryptmail.users import add_user
from keys.conftest import other_tool_hash, pw

FIRST = "marker-pw-first-Qx81"
SECOND = "marker-pw-second-Zr42"
THIRD = "marker-pw-third-Kd07"
LEGACY = "marker-pw-legacy-Hv55"


def forms(secret: str) -> set[str]:
    """The ways a secret could show up: as typed, normalized, and case-folded."""
    found = {secret, secret.lower(), secret.upper()}
    normalized = normalize_code(secret)
    if normalized is not None:
        found |= {normalized, normalized.lower()}
    return found


def scan(text: str, secrets: list[str]) -> list[str]:
    return [form for secret in secrets for form in forms(secret) if form in text]


async def test_no_secret_reaches_a_log_record(
    engine: AsyncEngine, crypto: CryptoConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "aiosqlite", "cryptmail"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = [FIRST, SECOND, THIRD, LEGACY]
    errors: list[str] = []

    async def failing(coro: object) -> None:
        try:
            await coro  # type: ignore[misc]  # -- any awaitable
        except CryptmailError as exc:
            errors.append(repr(exc) + str(exc) + "".join(traceback.format_exception(exc)))
        else:
            raise AssertionError("expected a failure")

    new = await create_user(engine, "alice@example.org", pw(FIRST), crypto)
    assert new.recovery_code is not None
    secrets.append(new.recovery_code)
    await failing(unlock_account(engine, "alice@example.org", pw(SECOND), crypto))
    await failing(unlock_account(engine, "nobody@example.org", pw(FIRST), crypto))
    account, _slot = await unlock_account(engine, "alice@example.org", pw(FIRST), crypto)
    app = await add_app_password(engine, account, "phone", crypto, client_ip="192.0.2.9")
    secrets.append(app)
    cache = UnlockedAccounts(engine, crypto)
    cached = await cache.acquire("alice@example.org", pw(app))
    await cache.acquire("alice@example.org", pw(app))
    cache.release(cached)
    await failing(change_password(engine, "alice@example.org", pw(THIRD), pw(SECOND), crypto))
    await change_password(engine, "alice@example.org", pw(FIRST), pw(SECOND), crypto)
    await failing(recover(engine, "alice@example.org", app, pw(THIRD), crypto))
    code = await recover(engine, "alice@example.org", new.recovery_code, pw(THIRD), crypto)
    secrets.append(code)
    account, _slot = await unlock_account(engine, "alice@example.org", pw(THIRD), crypto)
    secrets.append(await renew_recovery_code(engine, account, crypto))
    await revoke_app_password(engine, account.user.id, "phone")
    await failing(unlock_account(engine, "alice@example.org", pw(app), crypto))
    async with engine.begin() as conn:
        await add_user(conn, "legacy@example.org", other_tool_hash(LEGACY))
    await failing(unlock_account(engine, "legacy@example.org", pw(FIRST), crypto))
    await unlock_account(engine, "legacy@example.org", pw(LEGACY), crypto)

    assert len(caplog.records) > 50  # SQL echo and our own records were captured
    hits = []
    json_form = JsonFormatter()
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        # The JSON log (log_format = "json") writes the same records another way.
        text += json_form.format(record)
        hits += scan(text, secrets)
    for message in errors:
        hits += scan(message, secrets)
    assert hits == []
    assert len(errors) == 6

"""No password, recovery code or app password in the session store or in any log
record, at DEBUG, after every flow the web offers."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from starlette.applications import Starlette

from cryptmail.keys import NewAccount
from cryptmail.web._context import WebContext
from web.conftest import ALICE, NEW_PASSWORD, PASSWORD, csrf_token, sign_in, submit

THIRD = "third passphrase here"
FOURTH = "fourth passphrase here"


def _forms(secret: str) -> set[str]:
    compact = secret.replace("-", "")
    return {
        secret,
        secret.lower(),
        compact,
        compact.lower(),
        base64.b64encode(secret.encode()).decode(),
    }


def _secret_of(html: str) -> str:
    return html.split('<p class="secret"><code>')[1].split("</code>")[0]


async def _every_flow(client: httpx.AsyncClient, alice: NewAccount) -> list[str]:
    """Run each flow; return every secret that went over the wire."""
    secrets = [PASSWORD, NEW_PASSWORD, THIRD, FOURTH, alice.recovery_code or ""]
    await sign_in(client, ALICE, "wrong " + PASSWORD)
    await sign_in(client)
    await submit(client, "/account/log", {"password": PASSWORD})
    app_page = await submit(
        client, "/account/app-passwords", {"name": "phone", "password": PASSWORD}
    )
    secrets.append(_secret_of(app_page.text))
    renewed = await submit(client, "/account/recovery-code", {"password": PASSWORD})
    secrets.append(code := _secret_of(renewed.text))
    await submit(
        client, "/account/password", {"old": PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    listing = await client.get("/account/app-passwords")
    await client.post(
        "/account/app-passwords/revoke",
        data={"csrf_token": csrf_token(listing.text), "name": "phone", "confirm": "yes"},
    )
    recovered = await submit(
        client, "/forgot", {"address": ALICE, "code": code, "new": THIRD, "repeat": THIRD}
    )
    secrets.append(code := _secret_of(recovered.text))
    await client.post("/api/v1/password", json={"address": ALICE, "old": THIRD, "new": FOURTH})
    answer = await client.post(
        "/api/v1/recover", json={"address": ALICE, "code": code, "new": PASSWORD}
    )
    secrets.append(answer.json()["recovery_code"])
    created = await client.post(
        "/api/v1/app-passwords", json={"address": ALICE, "password": PASSWORD, "name": "tablet"}
    )
    secrets.append(created.json()["password"])
    await client.get("/api/v1/app-passwords", auth=(ALICE, PASSWORD))
    await client.delete("/api/v1/app-passwords/tablet", auth=(ALICE, "wrong " + PASSWORD))
    await sign_in(client)
    return secrets


async def test_no_secret_in_logs_or_sessions(
    client: httpx.AsyncClient,
    app: Starlette,
    alice: NewAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = await _every_flow(client, alice)
    assert len(secrets) == 10 and all(secrets)

    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    web_records = [r.getMessage() for r in caplog.records if r.name.startswith("cryptmail.web")]
    assert any("web sign-in failed" in m for m in web_records)  # outcomes are logged
    assert not any(ALICE in m for m in web_records)  # by address tag, not address
    context: WebContext = app.state.cryptmail_web
    sessions = [
        repr(vars(s))
        for pool in context.sessions._pools.values()  # inspecting the store
        for s in pool.values()
    ]
    assert sessions
    for secret in secrets:
        for form in _forms(secret):
            assert form not in logged, "a secret reached the log"
            for session in sessions:
                assert form not in session, "a secret reached the session store"


async def test_session_holds_only_user_id_and_address(
    signed_in: httpx.AsyncClient, app: Starlette, alice: NewAccount
) -> None:
    context: WebContext = app.state.cryptmail_web
    (session,) = context.sessions._pools[True].values()
    assert (session.user_id, session.address) == (alice.user.id, ALICE)
    for value in vars(session).values():
        assert isinstance(value, str | int | float | list)

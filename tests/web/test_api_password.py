"""API password change and recovery, as JSON and as Roundcube's form; the admin token
only where no key depends on the password."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, create_user, unlock_account
from cryptmail.users import add_user, get_user, hash_password, verify_password
from cryptmail.web import create_app
from web.conftest import (
    ALICE,
    CLIENT_IP,
    NEW_PASSWORD,
    PASSWORD,
    RecordingAccounts,
    RecordingThrottle,
    make_config,
    pw,
    sign_in,
)

TOKEN = "0123456789abcdef0123456789abcdef"  # the test admin token


async def test_change_with_json(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await client.post(
        "/api/v1/password", json={"address": ALICE, "old": PASSWORD, "new": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await unlock_account(engine, ALICE, pw(NEW_PASSWORD), config.crypto)


async def test_change_like_roundcube_httpapi(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    """password_httpapi_var_user/curpass/newpass = address/old/new, POSTed as a form."""
    response = await client.post(
        "/api/v1/password", data={"address": ALICE, "old": PASSWORD, "new": NEW_PASSWORD}
    )
    assert response.status_code == 204
    await unlock_account(engine, ALICE, pw(NEW_PASSWORD), config.crypto)


async def test_change_ends_web_sessions(client: httpx.AsyncClient, alice: NewAccount) -> None:
    await sign_in(client)
    await client.post(
        "/api/v1/password", json={"address": ALICE, "old": PASSWORD, "new": NEW_PASSWORD}
    )
    assert (await client.get("/account")).headers["location"] == "/sign-in"


async def test_wrong_old_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    wrong = await client.post(
        "/api/v1/password", json={"address": ALICE, "old": "not it", "new": NEW_PASSWORD}
    )
    unknown = await client.post(
        "/api/v1/password",
        json={"address": "bob@example.org", "old": PASSWORD, "new": NEW_PASSWORD},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "authentication_failed",
            "message": "The address, the password or the code is wrong.",
        }
    )
    assert [w[:2] for w in throttle.waits] == [(ALICE, CLIENT_IP), ("bob@example.org", CLIENT_IP)]
    assert throttle.waits[1][2] > 0  # the client's earlier failure counts


async def test_rules_are_checked_first(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    response = await client.post(
        "/api/v1/password", json={"address": ALICE, "old": PASSWORD, "new": "alice12345678"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "password_rejected"
    assert "address" in body["message"]
    assert PASSWORD not in body["message"]
    assert throttle.waits == []


async def test_recover(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await client.post(
        "/api/v1/recover",
        json={"address": ALICE, "code": alice.recovery_code, "new": NEW_PASSWORD},
    )
    assert response.status_code == 200
    new_code = response.json()["recovery_code"]
    assert new_code != alice.recovery_code
    assert response.headers["cache-control"] == "no-store"
    await unlock_account(engine, ALICE, pw(NEW_PASSWORD), config.crypto)
    again = await client.post(
        "/api/v1/recover",
        json={"address": ALICE, "code": alice.recovery_code, "new": "third passphrase"},
    )
    assert again.status_code == 401


async def test_change_and_recover_drop_imap_cached_credentials(
    client: httpx.AsyncClient, accounts: RecordingAccounts, alice: NewAccount
) -> None:
    await accounts.acquire(ALICE, pw(PASSWORD))
    wrong = {"address": ALICE, "old": "not the password", "new": NEW_PASSWORD}
    assert (await client.post("/api/v1/password", json=wrong)).status_code == 401
    assert accounts.forgotten == []
    change = {"address": ALICE, "old": PASSWORD, "new": NEW_PASSWORD}
    assert (await client.post("/api/v1/password", json=change)).status_code == 204
    assert accounts.forgotten == [ALICE]
    with pytest.raises(AuthenticationFailed):
        await accounts.acquire(ALICE, pw(PASSWORD))

    await accounts.acquire(ALICE, pw(NEW_PASSWORD))
    recovery = {"address": ALICE, "code": alice.recovery_code, "new": "third passphrase"}
    assert (await client.post("/api/v1/recover", json=recovery)).status_code == 200
    assert accounts.forgotten == [ALICE, ALICE]
    with pytest.raises(AuthenticationFailed):
        await accounts.acquire(ALICE, pw(NEW_PASSWORD))


async def test_recover_rules(client: httpx.AsyncClient, alice: NewAccount) -> None:
    response = await client.post(
        "/api/v1/recover", json={"address": ALICE, "code": alice.recovery_code, "new": "short"}
    )
    assert response.status_code == 422


# -- the admin token -------------------------------------------------------------------


@pytest.fixture
async def admin_client(
    tmp_path: Path, engine: AsyncEngine, throttle: RecordingThrottle
) -> AsyncIterator[httpx.AsyncClient]:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = make_config(tmp_path, **{"web.admin_token_file": str(token_file)})
    app = create_app(config, engine=engine, throttle=throttle)
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as client,
    ):
        yield client


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _plain_user(engine: AsyncEngine, email: str = "carol@example.org") -> int:
    async with engine.begin() as conn:
        user = await add_user(conn, email, hash_password(pw("old carol password")), crypt=0)
    return user.id


async def test_admin_sets_password_of_plain_user_without_keys(
    admin_client: httpx.AsyncClient, engine: AsyncEngine, config: Config
) -> None:
    await _plain_user(engine)
    response = await admin_client.post(
        "/api/v1/password",
        json={"address": "carol@example.org", "new": NEW_PASSWORD},
        headers=_bearer(),
    )
    assert response.status_code == 204, response.text
    async with engine.connect() as conn:
        carol = await get_user(conn, "carol@example.org")
    assert verify_password(carol.password_hash, pw(NEW_PASSWORD))
    assert "m=19456" in carol.password_hash  # the slots' cost
    account, _slot = await unlock_account(
        engine, "carol@example.org", pw(NEW_PASSWORD), config.crypto
    )
    assert account.user.crypt == 0  # keys made at first login, with the new password


@pytest.mark.parametrize("crypt", [0, 2])
async def test_admin_refused_for_users_with_keys(
    admin_client: httpx.AsyncClient, engine: AsyncEngine, config: Config, crypt: int
) -> None:
    await create_user(engine, "dave@example.org", pw(PASSWORD), config.crypto, crypt=crypt)
    response = await admin_client.post(
        "/api/v1/password",
        json={"address": "dave@example.org", "new": NEW_PASSWORD},
        headers=_bearer(),
    )
    assert response.status_code == 409
    assert response.json()["error"] == "key_locked_by_password"
    assert "recovery code" in response.json()["message"]
    await unlock_account(engine, "dave@example.org", pw(PASSWORD), config.crypto)


async def test_admin_refused_for_crypt_2_without_keys(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await add_user(conn, "erin@example.org", hash_password(pw("erin old pass")), crypt=2)
    response = await admin_client.post(
        "/api/v1/password",
        json={"address": "erin@example.org", "new": NEW_PASSWORD},
        headers=_bearer(),
    )
    assert response.status_code == 409


async def test_admin_unknown_user(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post(
        "/api/v1/password",
        json={"address": "nobody@example.org", "new": NEW_PASSWORD},
        headers=_bearer(),
    )
    assert response.status_code == 404


async def test_wrong_admin_token(
    admin_client: httpx.AsyncClient, engine: AsyncEngine, throttle: RecordingThrottle
) -> None:
    await _plain_user(engine)
    for token in ("wrong", TOKEN[:-1], TOKEN + "x", ""):
        response = await admin_client.post(
            "/api/v1/password",
            json={"address": "carol@example.org", "new": NEW_PASSWORD},
            headers=_bearer(token),
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert throttle.waits[-1][2] > 0


async def test_no_admin_token_configured(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await _plain_user(engine)
    response = await client.post(
        "/api/v1/password",
        json={"address": "carol@example.org", "new": NEW_PASSWORD},
        headers=_bearer(),
    )
    assert response.status_code == 401


async def test_without_old_and_without_token(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await _plain_user(engine)
    response = await client.post(
        "/api/v1/password", json={"address": "carol@example.org", "new": NEW_PASSWORD}
    )
    assert response.status_code == 400


async def test_a_guess_with_the_bucket_empty_gets_429_with_retry_after(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    """(i) Five wrong passwords spend the address's burst; the sixth is refused before any
    password is checked, with the seconds to wait, and so is the right one meanwhile."""
    for _ in range(5):
        wrong = await client.post(
            "/api/v1/password", json={"address": ALICE, "old": "not it", "new": NEW_PASSWORD}
        )
        assert wrong.status_code == 401
    for old in ("not it", PASSWORD):
        refused = await client.post(
            "/api/v1/password", json={"address": ALICE, "old": old, "new": NEW_PASSWORD}
        )
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_attempts"
        assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert throttle.refusals == 2


async def test_a_full_argon2_queue_gets_503_with_retry_after(
    client: httpx.AsyncClient, alice: NewAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptmail.errors import KdfBusy

    async def busy(*args: object, **kwargs: object) -> None:
        raise KdfBusy()

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", busy)
    response = await client.post(
        "/api/v1/password", json={"address": ALICE, "old": PASSWORD, "new": NEW_PASSWORD}
    )
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1

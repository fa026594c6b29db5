"""The user and key suite on SQLite, MariaDB and PostgreSQL.

Every test runs once per database (`database_url`), each time on a fresh database: the
binary columns, unique constraints, compare-and-swap updates, booleans and dates of the
keys layer must behave the same on all three. The command line is checked against the
servers too (`db upgrade` first), and a password change killed mid-transaction must
leave the old password on a server database as it does on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, current_revision, head_revision, upgrade
from cryptmail.db import tables as t
from cryptmail.errors import (
    AppPasswordExists,
    AuthenticationFailed,
    UnknownDomain,
    UserExists,
)
from cryptmail.keys import (
    CredentialWatcher,
    UnlockedAccounts,
    add_app_password,
    change_password,
    create_user,
    export_private_keys,
    has_recovery_code,
    list_app_passwords,
    list_events,
    list_key_pairs,
    recover,
    renew_recovery_code,
    revoke_app_password,
    rotate_key_pair,
    unlock_account,
)
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.secret import Password
from cryptmail.users import (
    add_alias,
    add_domain,
    add_user,
    get_user,
    hash_password,
    resolve_recipient,
    verify_password,
)

CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
CONFIG = "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"
ALICE = "alice@example.org"
PASSWORD = "her first password"  # test password
NEW = "her new password"
IP = "203.0.113.44"


def pw(text: str) -> Password:
    return Password.from_str(text)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    yield engine
    await engine.dispose()


async def snapshot(engine: AsyncEngine) -> tuple[object, ...]:
    async with engine.connect() as conn:
        hashes = (await conn.execute(select(t.virtual_users.c.password))).all()
        slots = (await conn.execute(select(t.cm_key_slots).order_by(t.cm_key_slots.c.id))).all()
    return tuple(hashes) + tuple(slots)


async def works(engine: AsyncEngine, password: str, email: str = ALICE) -> bool:
    try:
        await unlock_account(engine, email, pw(password), CRYPTO)
    except AuthenticationFailed:
        return False
    return True


async def test_create_and_log_in(engine: AsyncEngine) -> None:
    new = await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
    account, slot = await unlock_account(engine, "Alice@Example.ORG", pw(PASSWORD), CRYPTO)
    assert slot.kind == "password" and account.user.id == new.user.id
    assert not await works(engine, "wrong")
    assert not await works(engine, PASSWORD, "nobody@example.org")
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
        pairs = await list_key_pairs(conn, user.id)
        slots = await slots_of(conn, user.id)
    assert [(p.curve, p.active) for p in pairs] == [("x25519", True)]
    assert pairs[0].key_id == account.active_key.key_id
    assert next(s for s in slots if s.kind == "password").hash_fingerprint == hash_fingerprint(
        user.password_hash
    )
    assert await has_recovery_code(engine, user.id)
    with pytest.raises(UserExists):
        await create_user(engine, "ALICE@example.org", pw(PASSWORD), CRYPTO)
    with pytest.raises(UnknownDomain):
        await create_user(engine, "alice@example.net", pw(PASSWORD), CRYPTO)
    assert len(await snapshot(engine)) == 1 + 2


async def test_app_passwords(engine: AsyncEngine) -> None:
    new = await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), CRYPTO)
    phone = await add_app_password(engine, account, "phone", CRYPTO)
    with pytest.raises(AppPasswordExists):
        await add_app_password(engine, account, "phone", CRYPTO)
    _account, slot = await unlock_account(engine, ALICE, pw(phone.upper()), CRYPTO)
    assert (slot.kind, slot.name) == ("app", "phone")
    assert [i.name for i in await list_app_passwords(engine, new.user.id)] == ["phone"]
    await revoke_app_password(engine, new.user.id, "phone")
    assert not await works(engine, phone)


async def test_first_login_of_an_ispmail_row(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        legacy = hash_password(pw(PASSWORD), "SHA512-CRYPT", sha_crypt_rounds=1000)
        user = await add_user(conn, ALICE, legacy, crypt=2)
    assert not await works(engine, "wrong")
    async with engine.connect() as conn:
        assert await list_key_pairs(conn, user.id) == []
    assert await works(engine, PASSWORD)
    assert await works(engine, PASSWORD)
    async with engine.connect() as conn:
        assert len(await list_key_pairs(conn, user.id)) == 1
        assert [s.kind for s in await slots_of(conn, user.id)] == ["password"]


async def test_change_recover_renew(engine: AsyncEngine) -> None:
    new = await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
    assert new.recovery_code is not None
    before = await snapshot(engine)
    with pytest.raises(AuthenticationFailed):
        await change_password(engine, ALICE, pw("wrong"), pw(NEW), CRYPTO)
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, "AAAAA-" * 7 + "AAAAA", pw(NEW), CRYPTO)
    assert await snapshot(engine) == before

    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), CRYPTO, client_ip=IP)
    assert (await works(engine, PASSWORD), await works(engine, NEW)) == (False, True)
    code = await recover(engine, ALICE, new.recovery_code, pw("a third password"), CRYPTO)
    assert (await works(engine, NEW), await works(engine, "a third password")) == (False, True)
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, new.recovery_code, pw("fourth"), CRYPTO)
    account, _slot = await unlock_account(engine, ALICE, pw("a third password"), CRYPTO)
    renewed = await renew_recovery_code(engine, account, CRYPTO)
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, code, pw("fourth"), CRYPTO)
    await recover(engine, ALICE, renewed, pw("fourth"), CRYPTO)
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
    assert verify_password(user.password_hash, pw("fourth"))


async def test_rotation_export_and_sealed_events(engine: AsyncEngine) -> None:
    await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
    await unlock_account(engine, ALICE, pw(PASSWORD), CRYPTO)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw("guess"), CRYPTO, client_ip=IP)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), CRYPTO)
    async with engine.begin() as conn:
        info = await rotate_key_pair(conn, account, "secp521r1")
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), CRYPTO)
    assert account.active_key == info and len(account.private_keys) == 2
    assert len(export_private_keys(account, b"phrase")) == 2
    async with engine.connect() as conn:
        pairs = await list_key_pairs(conn, account.user.id)
        events = await list_events(conn, account)
        sealed = [bytes(r.detail_sealed) for r in await conn.execute(select(t.cm_key_events))]
    assert [p.active for p in pairs] == [False, True]
    assert [(e.event, e.client_ip) for e in events if e.event == "sign_in_failed"] == [
        ("sign_in_failed", IP)
    ]
    assert not any(IP.encode() in blob for blob in sealed)


async def test_cache(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import cryptmail.concurrency

    calls: list[str] = []
    real = cryptmail.concurrency.run_kdf

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", counting)
    new = await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
    cache = UnlockedAccounts(engine, CRYPTO)
    account = await cache.acquire(ALICE, pw(PASSWORD))
    phone = await add_app_password(engine, account, "phone", CRYPTO)
    await cache.acquire(ALICE, pw(phone))
    calls.clear()
    assert await cache.acquire(ALICE, pw(PASSWORD)) is account
    assert await cache.acquire(ALICE, pw(phone)) is account
    assert calls == []
    await revoke_app_password(engine, new.user.id, "phone")
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(phone))


async def test_credential_watcher(engine: AsyncEngine) -> None:
    """The watcher's one query (user_id IN (...)) on each backend: a password change
    ends alice's watched sessions and leaves bob's."""
    alice = (await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)).user.id
    bob = (await create_user(engine, "bob@example.org", pw(PASSWORD), CRYPTO)).user.id
    watcher = CredentialWatcher(engine, poll_s=3600)
    ended: list[int] = []

    def on_change(user_id: int) -> Callable[[], None]:
        return lambda: ended.append(user_id)

    for user_id in (alice, alice, bob):
        watcher.watch(user_id, 0, on_change(user_id))
    assert await watcher.check() == 0
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), CRYPTO)
    assert await watcher.check() == 2
    assert ended == [alice, alice]
    await watcher.close()


async def test_aliases(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for email in ("alice@example.org", "bob@example.org"):
            await add_user(conn, email, "{PLAIN}unused")
        await add_alias(conn, "Team@Example.org", "alice@example.org")
        await add_alias(conn, "team@example.org", "BOB@example.org")
        await add_alias(conn, "@example.org", "alice@example.org")
    async with engine.connect() as conn:
        team = await resolve_recipient(conn, "TEAM@example.org")
        other = await resolve_recipient(conn, "someone@example.org")
        bob = await resolve_recipient(conn, "bob@example.org")
    assert sorted(u.email for u in team) == ["alice@example.org", "bob@example.org"]
    assert [u.email for u in other] == ["alice@example.org"]
    assert [u.email for u in bob] == ["bob@example.org"]


# -- the command line on each database ----------------------------------------------------


def _cli(tmp_path: Path, database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    config = tmp_path / "cryptmail.toml"
    config.write_text(CONFIG)

    def run(*args: str, stdin: str = "", crash_at: str = "") -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cryptmail", "--config", str(config)]
        command += ["--data-dir", str(tmp_path / "data"), "--database-url", database_url, *args]
        env = dict(os.environ, CRYPTMAIL_CRASH_AT=crash_at)
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=120, env=env
        )

    return run


async def test_cli_needs_db_upgrade_on_servers(database_url: str, tmp_path: Path) -> None:
    cli = _cli(tmp_path, database_url)
    before = cli("domain", "list")
    if database_url.startswith("sqlite"):
        assert before.returncode == 0  # the embedded database is made on first use
    else:
        assert before.returncode == 1
        assert before.stderr.count("\n") == 1
        assert "db upgrade" in before.stderr and "no cryptmail schema" in before.stderr
        assert PASSWORD not in before.stderr
    done = cli("db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == head_revision()
    assert cli("domain", "add", "example.org").returncode == 0
    added = cli("user", "add", ALICE, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    code = added.stdout.strip()
    assert (
        cli("user", "passwd", ALICE, "--password-stdin", stdin=f"{PASSWORD}\n{NEW}\n").returncode
        == 0
    )
    assert (
        cli("user", "recover", ALICE, "--stdin", stdin=f"{code}\na third password\n").returncode
        == 0
    )
    listing = cli("key", "list", ALICE)
    # passwd and recover re-keyed: three key pairs, the newest active.
    rows = listing.stdout.splitlines()[1:]
    assert listing.returncode == 0 and [r.split()[-1] for r in rows] == ["no", "no", "yes"]
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision()
        assert (await works(engine, NEW), await works(engine, "a third password")) == (False, True)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("checkpoint", ["password:after-hash", "password:after-commit"])
async def test_passwd_killed_mid_transaction(
    database_url: str, tmp_path: Path, checkpoint: str
) -> None:
    """A client killed inside its transaction: the server rolls it back."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        await create_user(engine, ALICE, pw(PASSWORD), CRYPTO)
        cli = _cli(tmp_path, database_url)
        stdin = f"{PASSWORD}\n{NEW}\n"
        done = cli("user", "passwd", ALICE, "--password-stdin", stdin=stdin, crash_at=checkpoint)
        assert done.returncode == -signal.SIGKILL
        async with engine.connect() as conn:
            user = await get_user(conn, ALICE)
            slot = next(s for s in await slots_of(conn, user.id) if s.kind == "password")
        assert slot.hash_fingerprint == hash_fingerprint(user.password_hash)
        old_works, new_works = await works(engine, PASSWORD), await works(engine, NEW)
        committed = checkpoint.endswith("after-commit")
        assert (old_works, new_works) == (not committed, committed)
        assert verify_password(user.password_hash, pw(NEW if committed else PASSWORD))
    finally:
        await engine.dispose()

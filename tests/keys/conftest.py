"""Fixtures for the keys tests: a migrated SQLite database and fast-but-valid Argon2.

Key slots (and the `{ARGON2ID}` hashes keys writes at the same cost) use the smallest
Argon2 cost the config accepts, 19 MiB with t=2: a few tens of milliseconds each.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config, Argon2Params, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.db import tables as t
from cryptmail.keys import NewAccount, create_user
from cryptmail.keys._timing import seed_cover
from cryptmail.secret import Password
from cryptmail.users import add_domain, hash_password

PASSWORD = "correct horse battery staple"  # the test users' password

MakeUser = Callable[..., Awaitable[NewAccount]]


# What other tools write, kept cheap for speed.
CHEAP_HASH = Argon2Params(memory_kib=8192, time_cost=1, parallelism=1)


def pw(text: str) -> Password:
    return Password.from_str(text)


def other_tool_hash(password: str, scheme: str = "ARGON2ID") -> str:
    """What an admin tool or an older ISPmail setup writes (at a low cost, for speed)."""
    return hash_password(
        pw(password), scheme, argon2=CHEAP_HASH, bcrypt_cost=4, sha_crypt_rounds=1000
    )


async def snapshot(engine: AsyncEngine) -> tuple[object, ...]:
    """Every credential-bearing value: the password hashes and all key slot rows."""
    async with engine.connect() as conn:
        hashes = (await conn.execute(select(t.virtual_users.c.password))).all()
        slots = (await conn.execute(select(t.cm_key_slots).order_by(t.cm_key_slots.c.id))).all()
    return tuple(hashes) + tuple(slots)


@pytest.fixture
def crypto() -> CryptoConfig:
    return CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cryptmail.db"


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{db_path}")
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    # The cover hash of failing logins, given instead of measured at the first failure,
    # so that each test's KDF calls are its own (tests/keys/test_timing.py measures).
    seed_cover(engine, other_tool_hash("not anyone's password"), 0.0)
    yield engine
    await engine.dispose()


@pytest.fixture
def make_user(engine: AsyncEngine, crypto: CryptoConfig) -> MakeUser:
    """`await make_user(email, password, crypt=2, quota=0)` -> NewAccount."""

    async def make(
        email: str = "alice@example.org", password: str = PASSWORD, *, crypt: int = 2
    ) -> NewAccount:
        return await create_user(engine, email, Password.from_str(password), crypto, crypt=crypt)

    return make


@pytest.fixture
def kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of every function sent to the Argon2 pool by the keys package."""
    import pkgutil

    import cryptmail.concurrency
    import cryptmail.keys

    for info in pkgutil.iter_modules(cryptmail.keys.__path__):
        module = importlib.import_module(f"cryptmail.keys.{info.name}")
        # Every Argon2 of the keys package goes through _kdf, so counting there is complete.
        assert info.name == "_kdf" or not hasattr(module, "run_kdf"), info.name

    calls: list[str] = []
    real = cryptmail.concurrency.run_kdf

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", counting)
    return calls


@pytest.fixture
def argon2_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry per Argon2 computation, counted where the argon2 library is called: slot
    keys (crypto's derive_key) and `{ARGON2*}` hashes made or checked (users)."""
    import argon2.low_level

    import cryptmail.hashing

    runs: list[str] = []

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            runs.append(name)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(  # looked up there at each call (crypto._kdf imports it late)
        cryptmail.hashing,
        "hash_secret_raw",
        counted("slot key", argon2.low_level.hash_secret_raw),
    )
    monkeypatch.setattr(
        argon2.low_level, "hash_secret", counted("new hash", argon2.low_level.hash_secret)
    )
    monkeypatch.setattr(
        argon2.low_level, "verify_secret", counted("hash check", argon2.low_level.verify_secret)
    )
    return runs


@dataclass
class Writes:
    """Write transactions committed, and the statements that changed virtual_users.password."""

    commits: int = 0
    hash_updates: int = 0


@pytest.fixture
def writes(engine: AsyncEngine) -> Iterator[Writes]:
    seen = Writes()

    def on_commit(_conn: object) -> None:
        seen.commits += 1

    def on_execute(*args: Any) -> None:
        statement = " ".join(str(args[2]).split()).upper()
        if statement.startswith("UPDATE VIRTUAL_USERS") and "PASSWORD=" in statement.replace(
            " ", ""
        ):
            seen.hash_updates += 1

    event.listen(engine.sync_engine, "commit", on_commit)
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    yield seen
    event.remove(engine.sync_engine, "commit", on_commit)
    event.remove(engine.sync_engine, "before_cursor_execute", on_execute)

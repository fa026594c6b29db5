"""Fixtures for the web tests: a migrated SQLite database, a user, the app in its
lifespan (with the unlocked-account cache IMAP would share), and an httpx client that
talks to it in-process over "https".

Argon2 runs at the smallest cost the config accepts (19 MiB, t=2): a few tens of
milliseconds per derivation. The throttle records each reservation and the debt it met.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from cryptmail.config import Config, CryptoConfig, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import (
    LoginThrottle,
    NewAccount,
    Reservation,
    UnlockedAccounts,
    create_user,
)
from cryptmail.keys._timing import seed_cover
from cryptmail.secret import Password
from cryptmail.users import add_domain, hash_password

ALICE = "alice@example.org"
PASSWORD = "correct horse battery staple"  # the test user's password
NEW_PASSWORD = "a brand new passphrase"
CLIENT_IP = "203.0.113.7"
FAST_ARGON2 = {"crypto.argon2.memory_kib": 19456, "crypto.argon2.time_cost": 2}

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def pw(text: str) -> Password:
    return Password.from_str(text)


def make_config(data_dir: Path, **overrides: Any) -> Config:
    return load_config(None, data_dir=str(data_dir), **FAST_ARGON2, **overrides)


def csrf_token(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    found = _TOKEN.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class RecordingThrottle(LoginThrottle):
    """A LoginThrottle that records each reservation with the debt it met (the tokens
    earlier failures had spent from the address's or the client's bucket)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.waits: list[tuple[str, str, float]] = []

    async def acquire(
        self, address: str, client_ip: str, *, patience_s: float = 10.0
    ) -> Reservation:
        self.waits.append((address, client_ip, self.debt(address, client_ip)))
        return await super().acquire(address, client_ip, patience_s=patience_s)


class RecordingAccounts(UnlockedAccounts):
    """The UnlockedAccounts IMAP holds, also recording which addresses it had to forget."""

    def __init__(self, engine: AsyncEngine, crypto: CryptoConfig) -> None:
        super().__init__(engine, crypto)
        self.forgotten: list[str] = []

    def forget(self, address: str) -> None:
        self.forgotten.append(address)
        super().forget(address)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def engine(config: Config) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(config.database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    # The cover hash of failing logins, given instead of measured (several Argon2id) at
    # each test's first failure; tests/keys/test_timing.py measures it.
    seed_cover(
        engine, hash_password(pw("not anyone's"), "SHA512-CRYPT", sha_crypt_rounds=1000), 0.0
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def alice(engine: AsyncEngine, config: Config) -> NewAccount:
    """alice@example.org with keys, crypt = 2 and a recovery code."""
    return await create_user(engine, ALICE, pw(PASSWORD), config.crypto)


@pytest.fixture
def throttle() -> RecordingThrottle:
    return RecordingThrottle()


@pytest.fixture
def accounts(engine: AsyncEngine, config: Config) -> RecordingAccounts:
    """The unlocked-account cache of an IMAP listener in the same process."""
    return RecordingAccounts(engine, config.crypto)


@pytest.fixture
async def app(
    config: Config, engine: AsyncEngine, throttle: RecordingThrottle, accounts: RecordingAccounts
) -> AsyncIterator[Starlette]:
    from cryptmail.web import create_app

    app = create_app(config, engine=engine, throttle=throttle, accounts=accounts)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    """GET a page and return the CSRF token of its form."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_token(page.text)


async def submit(
    client: httpx.AsyncClient, page: str, data: dict[str, str], action: str | None = None
) -> httpx.Response:
    """Fill in the form of `page` (fresh token) and post it to `action` (default: `page`)."""
    token = await form_token(client, page)
    return await client.post(action or page, data={"csrf_token": token, **data})


async def sign_in(
    client: httpx.AsyncClient, address: str = ALICE, password: str = PASSWORD
) -> httpx.Response:
    return await submit(client, "/sign-in", {"address": address, "password": password})


@pytest.fixture
async def signed_in(client: httpx.AsyncClient, alice: NewAccount) -> httpx.AsyncClient:
    """The client, signed in as alice."""
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/account"
    return client


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (PEM files in `directory`)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "web.crt", directory / "web.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path

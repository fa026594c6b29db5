"""An LMTP server on a free loopback port, over a fresh SQLite store, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.delivery import DeliveryHandler, Limits, LmtpServer, SieveDelivery
from cryptmail.keys import NewAccount, create_user, unlock_account
from cryptmail.secret import Password
from cryptmail.store import (
    ChangeBus,
    apply_filing_notes,
    inbox_id,
    list_mailboxes,
    load_messages,
    open_blob,
    read_plaintext,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain

PASSWORD = "correct horse battery staple"  # the test users' password
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))


@dataclass
class Rig:
    engine: AsyncEngine
    blobs: LocalBlobStore
    server: LmtpServer
    data_dir: Path

    @property
    def port(self) -> int:
        return self.server.ports[0]

    async def add_user(self, email: str, *, crypt: int = 2, quota: int = 0) -> NewAccount:
        return await create_user(
            self.engine, email, Password.from_str(PASSWORD), CRYPTO, crypt=crypt, quota=quota
        )

    async def messages(self, email: str, role: str = "inbox") -> list[bytes]:
        """Every message of `email` in the default folder `role` (INBOX unless told),
        decrypted with the password, in UID order, after Sieve's filing notes are
        applied as a login applies them."""
        return [m for m, _flags in await self.flagged(email, role)]

    async def flagged(self, email: str, name: str = "inbox") -> list[tuple[bytes, frozenset[str]]]:
        """(message, flags) of `email` in the default folder with role `name`, or else
        the folder named `name`, after the filing notes are applied, in UID order."""
        account, _slot = await unlock_account(
            self.engine, email, Password.from_str(PASSWORD), CRYPTO
        )
        await apply_filing_notes(self.engine, account)
        async with self.engine.connect() as conn:
            mailbox = await inbox_id(conn, account.user.id)
            if name != "inbox":
                boxes = await list_mailboxes(conn, account.user.id, account)
                mailbox = next(b.id for b in boxes if name in (b.role, b.name))
            rows = await load_messages(conn, account, mailbox)
        out = []
        for row in rows:
            opened = await open_blob(self.blobs, account, row.blob_id)
            out.append((await read_plaintext(self.blobs, opened), row.flags))
        return out


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[MakeRig]:
    made: list[Rig] = []

    async def make(
        limits: Limits | None = None,
        max_connections: int = 16,
        quota_warnings: tuple[int, ...] = (),
        message_limit: int = 0,
        sieve: Callable[[AsyncEngine], SieveDelivery] | None = None,
        recipient_cache_s: float = 0.0,
    ) -> Rig:
        engine = create_engine(f"sqlite:///{tmp_path / 'cryptmail.db'}")
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        blobs = LocalBlobStore(tmp_path / "blobs")
        handler = DeliveryHandler(
            engine,
            blobs,
            tmp_path / "spool",
            bus=ChangeBus(),
            quota_warnings=quota_warnings,
            message_limit=message_limit,
            sieve=sieve(engine) if sieve is not None else None,
            recipient_delimiter="+",
            recipient_cache_s=recipient_cache_s,
        )
        server = LmtpServer(
            handler, hostname="lmtp.test", limits=limits, max_connections=max_connections
        )
        await server.listen("127.0.0.1:0")
        rig = Rig(engine, blobs, server, tmp_path)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.server.stop(grace_s=5)
        await rig.engine.dispose()


@pytest.fixture
async def rig(rig_factory: MakeRig) -> Rig:
    return await rig_factory()

"""Folder names a database writer swapped, and names in the format before field
version 3, seen over IMAP (issue 14, finding 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cryptmail.crypto import FieldCipher
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from store.sealed_rows import legacy_seal, swap

from ...raw_client import RawClient
from ...server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _listed(client: RawClient) -> set[bytes]:
    untagged, done = client.ask(b'LIST "" *')
    assert b" OK " in done, done
    return {line.rsplit(b" ", 1)[1] for line in untagged if line.startswith(b"* LIST ")}


def _ids(rig: ImapRig) -> dict[str, int]:
    async def work() -> dict[str, int]:
        account = await _unlock(rig)
        mb = t.cm_mailboxes
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(mb.c.id, mb.c.name_lookup).where(mb.c.role.is_(None)))
            by_lookup = {bytes(r.name_lookup): int(r.id) for r in rows}
        context = b"mailbox-name|%d" % account.user.id
        return {
            name: by_lookup[account.fields.lookup(name.encode(), context)]
            for name in ("Payroll", "Newsletters")
        }

    return rig.run(work())


async def _unlock(rig: ImapRig) -> UnlockedAccount:
    account, _ = await unlock_account(
        rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
    )
    return account


def test_swapped_names_are_left_out_of_list_and_refused(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    client = RawClient.connect(rig.port)
    client.login()
    for name in (b"Payroll", b"Newsletters", b"Untouched"):
        assert b" OK " in client.ask(b"CREATE " + name)[1]
    ids = _ids(rig)
    rig.run(
        swap(rig.engine, t.cm_mailboxes, "name_sealed", "id", ids["Payroll"], ids["Newsletters"])
    )
    listed = _listed(client)
    assert b"Untouched" in listed and b"INBOX" in listed
    assert not {b"Payroll", b"Newsletters"} & listed
    _, done = client.ask(b"SELECT Payroll")
    assert b" NO [CORRUPTION]" in done, done
    _, done = client.ask(b"DELETE Newsletters")
    assert b" NO [CORRUPTION]" in done, done
    assert b" OK " in client.ask(b"SELECT Untouched")[1]
    assert f"mailbox id {ids['Payroll']}" in caplog.text
    client.close()


def test_login_binds_old_names_to_their_rows(rig: ImapRig) -> None:
    client = RawClient.connect(rig.port)
    client.login()
    for name in (b"Payroll", b"Newsletters"):
        assert b" OK " in client.ask(b"CREATE " + name)[1]
    client.close()
    ids = _ids(rig)

    async def make_old() -> None:
        account = await _unlock(rig)
        async with rig.engine.begin() as conn:
            for name, mailbox_id in ids.items():
                old = legacy_seal(account, name.encode(), b"mailbox-name|%d" % account.user.id)
                await conn.execute(
                    update(t.cm_mailboxes)
                    .where(t.cm_mailboxes.c.id == mailbox_id)
                    .values(name_sealed=old)
                )

    async def current() -> list[bool]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(
                select(t.cm_mailboxes.c.name_sealed).where(t.cm_mailboxes.c.id.in_(ids.values()))
            )
            return [FieldCipher.is_current(bytes(r.name_sealed)) for r in rows]

    rig.run(make_old())
    assert rig.run(current()) == [False, False]
    client = RawClient.connect(rig.port)
    client.login()
    assert rig.run(current()) == [True, True]
    assert {b"Payroll", b"Newsletters"} <= _listed(client)
    client.close()

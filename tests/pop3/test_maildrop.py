"""The maildrop view: Dovecot's UIDL form, kept through an import from Dovecot; sizes
from the sealed cache or counted; QUIT's update."""

from __future__ import annotations

import imaplib
import shutil
from pathlib import Path

from cryptmail.crypto.dovecot import keyring_from_attributes, parse_attributes, parse_uidlist
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.pop3 import Maildrop, uidl
from cryptmail.secret import Password
from cryptmail.store import import_maildir

from .conftest import PASSWORD, USER, Pop3Rig

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"


def test_uidl_is_dovecots_default_form() -> None:
    # pop3_uidl_format = %08Xu%08Xv
    assert uidl(1, 1795865639) == "000000016B0ABC27"  # grace's dovecot-uidvalidity.6b0abc27
    assert uidl(0x1234ABCD, 1) == "1234ABCD00000001"


async def _account(rig: Pop3Rig) -> UnlockedAccount:
    account, _slot = await unlock_account(
        rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
    )
    return account


def test_uidls_survive_an_import_from_dovecot(rig: Pop3Rig, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "grace" / "Maildir", root)
    uidlist = parse_uidlist((root / "dovecot-uidlist").read_bytes())
    keyring = keyring_from_attributes(
        parse_attributes((root / "dovecot-attributes").read_bytes()), None
    )

    async def work() -> None:
        account = await _account(rig)
        async for _ in import_maildir(rig.engine, rig.blobs, account, root, keyring):
            pass

    rig.run(work())
    pop = rig.login()
    _, listing, _ = pop.uidl()
    pop.quit()
    # What Dovecot's POP3 gave for the same Maildir.
    assert listing == [
        f"{n} {record.uid:08X}{uidlist.uid_validity:08X}".encode()
        for n, record in enumerate(uidlist.records, 1)
    ]


def test_sizes_counted_then_from_the_cache(rig: Pop3Rig) -> None:
    message = b"Subject: s\r\n\r\n" + b"x" * 70_000 + b"\r\n"
    rig.deliver(message)

    async def load() -> list[int]:
        account = await _account(rig)
        drop = await Maildrop.load(rig.engine, rig.blobs, account)
        return [e.size for e in drop.entries] + [int(e.key is not None) for e in drop.entries]

    assert rig.run(load()) == [len(message), 0]  # no cache yet: counted
    imap = imaplib.IMAP4("127.0.0.1", rig.imap.port)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    imap.fetch("1", "(RFC822.SIZE)")
    imap.logout()
    assert rig.run(load()) == [len(message), 1]  # from the sealed cache


def test_commit_without_changes_writes_nothing(rig: Pop3Rig) -> None:
    rig.deliver(b"A: 1\r\n\r\nb\r\n")

    async def work() -> tuple[int, int]:
        account = await _account(rig)
        drop = await Maildrop.load(rig.engine, rig.blobs, account)
        drop.entries[0].deleted = True
        drop.reset()
        done = await drop.commit(rig.bus)
        return done.expunged, done.seen

    assert rig.run(work()) == (0, 0)
    assert rig.blob_count() == 1

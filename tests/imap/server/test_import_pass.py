"""Imported mail and the background pass, on a live server (issue 16): after `import
maildir` the pass seals every imported message's whole cache (the analysis FETCH,
SORT and THREAD need) from its one read, so SORT and FETCH ENVELOPE of imported mail
read no blob once it has run. Caches an older import left without the analysis are
handed to the pass by the next import run (`store.drop_bare_caches`), or by the pass
itself at its start, once per user and process (no import rerun needed)."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cryptmail import store
from cryptmail.crypto.dovecot import DovecotKeyring
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password

from ..server_rig import PASSWORD, USER, ImapRig, start_rig, wait_until

BOB = "bob@example.org"
COUNT = 12


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(
        tmp_path, **{"imap.fts_background_percent": 100, "imap.max_connections_per_ip": 6}
    )


def _maildir(root: Path) -> Path:
    """A plain Maildir as Dovecot keeps one (bare LF): subjects in an order that is not
    the arrival order, some in new/ and some read in cur/."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i in range(COUNT):
        subject = f"topic {(i * 5) % COUNT:02d}"
        body = (
            f"From: Sender {i} <s{i}@example.net>\nTo: {USER}\nSubject: {subject}\n"
            f"Date: Mon, 0{1 + i % 9} Dec 2025 10:00:00 +0000\nMessage-ID: <m{i}@example.net>\n"
            f"\nMessage number {i}.\n"
        )
        name = f"17000000{i:02d}.M{i}P1.host"
        if i % 2:
            (root / "cur" / f"{name}:2,S").write_text(body)
        else:
            (root / "new" / name).write_text(body)
    return root


def _account(rig: ImapRig, email: str) -> UnlockedAccount:
    async def work() -> UnlockedAccount:
        account, _slot = await unlock_account(
            rig.engine, email, Password.from_str(PASSWORD), rig.config.crypto
        )
        return account

    return rig.run(work())


def _import(rig: ImapRig, account: UnlockedAccount, root: Path) -> store.ImportProgress:
    async def work() -> store.ImportProgress:
        events = [
            p
            async for p in store.import_maildir(
                rig.engine, rig.blobs, account, root, DovecotKeyring()
            )
        ]
        return events[-1]

    return rig.run(work())


def _analysed(rig: ImapRig, account: UnlockedAccount) -> int:
    """The user's rows whose sealed cache holds the analysis."""

    async def work() -> int:
        m, b = t.cm_messages, t.cm_mailboxes
        async with rig.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(m.c.id)
                    .select_from(m.join(b, m.c.mailbox_id == b.c.id))
                    .where(b.c.user_id == account.user.id)
                )
            ).scalars()
            caches = await store.load_caches(conn, account, [store.MessageId(i) for i in ids])
        return sum(1 for cache in caches.values() if cache.extra)

    return rig.run(work())


def _rows(rig: ImapRig, account: UnlockedAccount) -> int:
    async def work() -> int:
        m, b = t.cm_messages, t.cm_mailboxes
        async with rig.engine.connect() as conn:
            found = await conn.execute(
                select(func.count())
                .select_from(m.join(b, m.c.mailbox_id == b.c.id))
                .where(b.c.user_id == account.user.id)
            )
            return int(found.scalar_one())

    return rig.run(work())


def _login(rig: ImapRig, email: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", rig.port)
    client.login(email, PASSWORD)
    return client


def _subject_order() -> list[bytes]:
    """UIDs by subject (imported in file name order: message i has UID i + 1)."""
    order = sorted(range(COUNT), key=lambda i: ((i * 5) % COUNT, i))
    return [b"%d" % (i + 1) for i in order]


def _check_answers(client: imaplib.IMAP4) -> None:
    """SORT (SUBJECT) and FETCH ENVELOPE of every imported message, as they must be."""
    client.select("INBOX", readonly=True)
    status, data = client.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
    assert status == "OK", data
    assert data[0].split() == _subject_order()
    status, data = client.uid("FETCH", "1:*", "(ENVELOPE)")
    assert status == "OK", data
    envelopes = [item for item in data if isinstance(item, bytes)]
    assert len(envelopes) == COUNT, data
    for envelope in envelopes:
        uid = int(envelope.split(b"UID ")[1].split()[0])
        i = uid - 1
        assert b'"topic %02d"' % ((i * 5) % COUNT) in envelope, envelope
        assert b'"<m%d@example.net>"' % i in envelope, envelope
        assert b'(("Sender %d" NIL "s%d" "example.net"))' % (i, i) in envelope, envelope


def _unlink_blobs(rig: ImapRig, account: UnlockedAccount) -> None:
    async def work() -> list[store.BlobId]:
        m, b = t.cm_messages, t.cm_mailboxes
        async with rig.engine.connect() as conn:
            rows = await conn.execute(
                select(m.c.blob_id)
                .select_from(m.join(b, m.c.mailbox_id == b.c.id))
                .where(b.c.user_id == account.user.id)
            )
            return [store.BlobId(bytes(r[0])) for r in rows]

    for blob_id in rig.run(work()):
        rig.blobs.path_of(blob_id).unlink()


def _old_style_caches(rig: ImapRig, account: UnlockedAccount) -> None:
    """Give every row of the user the cache an import before issue 16 wrote: exact size
    and message key, no analysis."""

    async def work() -> None:
        async with rig.engine.begin() as conn:
            box = await store.get_mailbox(conn, account, "INBOX")
            for row in await store.load_messages(conn, account, box.id):
                opened = await store.open_blob(rig.blobs, account, row.blob_id)
                size = len(await store.read_plaintext(rig.blobs, opened))
                key = opened.key.message_key
                await store.save_cache(conn, account, row, store.MessageCache(size, key))

    rig.run(work())


def test_the_pass_seals_the_analysis_of_imported_mail(rig: ImapRig, tmp_path: Path) -> None:
    """Alice's import, then a session that only logs in: the pass analyses every
    imported message, and with every blob gone SORT and FETCH ENVELOPE answer from the
    caches alone. Bob (caches as an older import left them) gets the same after an
    import rerun, in two sessions."""
    alice = _account(rig, USER)
    assert _import(rig, alice, _maildir(tmp_path / "alice")).imported == COUNT
    assert _analysed(rig, alice) == 0
    client = _login(rig, USER)
    wait_until(lambda: _analysed(rig, alice) == COUNT, "the pass left imported mail unanalysed")
    _unlink_blobs(rig, alice)  # from now on a read of a message would fail
    _check_answers(client)
    client.logout()

    rig.add_user(BOB, PASSWORD)
    bob = _account(rig, BOB)
    bob_dir = _maildir(tmp_path / "bob")
    assert _import(rig, bob, bob_dir).imported == COUNT
    _old_style_caches(rig, bob)
    assert _analysed(rig, bob) == 0
    rerun = _import(rig, bob, bob_dir)  # hands the old caches to the pass
    assert (rerun.imported, rerun.skipped) == (0, COUNT)
    assert _rows(rig, bob) == COUNT
    first, second = _login(rig, BOB), _login(rig, BOB)
    wait_until(lambda: _analysed(rig, bob) == COUNT, "the pass left old imported caches alone")
    _unlink_blobs(rig, bob)
    for client in (first, second):
        _check_answers(client)
        client.logout()


def test_the_pass_repairs_bare_caches_without_an_import_rerun(rig: ImapRig, tmp_path: Path) -> None:
    """Two users whose imported mail has the caches an import before issue 16 left
    (size and key only), nothing run since: their logins (two sessions of Bob, one of
    Alice, all from one address) start the pass, which forgets those caches once and
    analyses every message; with every blob gone SORT and FETCH ENVELOPE then answer
    from the caches alone in each session."""
    rig.add_user(BOB, PASSWORD)
    users = {USER: _account(rig, USER), BOB: _account(rig, BOB)}
    for email, account in users.items():
        assert _import(rig, account, _maildir(tmp_path / email)).imported == COUNT
        _old_style_caches(rig, account)
        assert _analysed(rig, account) == 0
    clients = [_login(rig, USER), _login(rig, BOB), _login(rig, BOB)]
    for account in users.values():

        def analysed(account: UnlockedAccount = account) -> bool:
            return _analysed(rig, account) == COUNT

        wait_until(analysed, "bare caches left as they were")
        assert _rows(rig, account) == COUNT
        _unlink_blobs(rig, account)
    for client in clients:
        _check_answers(client)
        client.logout()

"""Sieve at delivery through real LMTP: global before/after scripts, the user's script
(from a loader standing in for the sealed script store's), folders, reject per
recipient, discard, runtime errors kept, subaddress, duplicate, a relay that is down."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import load_config
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.db._engine import _sync_engine
from cryptmail.delivery import SieveDelivery, SieveSetup, delivery_headers, load_sieve_setup
from cryptmail.errors import ConfigError
from cryptmail.sieve import (
    ScriptLimits,
    SieveSettings,
    compile_script,
    put_script,
    read_active_sync,
    set_active,
)
from smtp_sink import SmtpSink

from .conftest import MakeRig, Rig

ISPMAIL_AFTER = (
    'require ["fileinto"];\nif header :contains "X-Spam" "Yes" {\n  fileinto "Junk";\n  stop;\n}\n'
)
HAM = b"From: a@example.net\r\nSubject: hello\r\nMessage-ID: <h@example.net>\r\n\r\nHello\r\n"
SPAM = b"From: s@bad.example\r\nSubject: win\r\nX-Spam: Yes\r\nMessage-ID: <s@x>\r\n\r\nBuy\r\n"


def _sieve(
    user_scripts: dict[int, str] | None = None,
    *,
    before: str | None = None,
    after: str | None = ISPMAIL_AFTER,
    relay: str = "",
    global_dir: Path | None = None,
) -> object:
    scripts = user_scripts if user_scripts is not None else {}

    def load(conn: Connection, user_id: UserId) -> str | None:
        return scripts.get(int(user_id))

    setup = SieveSetup(
        before=compile_script(before, name="before") if before else None,
        after=compile_script(after, name="after") if after else None,
        relay=relay,
        global_dir=global_dir,
        settings=SieveSettings(recipient_delimiter="+"),
    )
    return lambda engine: SieveDelivery(engine, setup, load)


def _transaction(port: int, sender: str, recipients: list[str], message: bytes) -> list[bytes]:
    """One LMTP transaction; the reply codes, one per recipient, after DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rb")
        script = [b"LHLO c.test", b"MAIL FROM:<%s>" % sender.encode()]
        script += [b"RCPT TO:<%s>" % r.encode() for r in recipients]
        sock.sendall(b"\r\n".join([*script, b"DATA", b""]) + message + b".\r\nQUIT\r\n")
        replies = [line for line in iter(f.readline, b"") if line[3:4] != b"-"]
    return [r.rstrip() for r in replies[-len(recipients) - 1 : -1]]


def _send(port: int, recipient: str, message: bytes, sender: str = "a@example.net") -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.ehlo("client.test")
        assert client.sendmail(sender, [recipient], message) == {}


async def _rows(rig: Rig) -> int:
    async with rig.engine.connect() as conn:
        query = select(func.count()).select_from(t.cm_messages)
        return int((await conn.execute(query)).scalar_one())


async def test_ispmail_junk_script_files_spam_for_many_users_at_once(
    rig_factory: MakeRig,
) -> None:
    rig = await rig_factory(sieve=_sieve())
    users = [f"u{i}@example.org" for i in range(4)]
    for user in users:
        await rig.add_user(user, crypt=2 if user != "u3@example.org" else 0)

    # Several sessions per user in parallel, ham and spam interleaved. The clients get
    # threads of their own: in the default pool they would wait for the server's
    # offloaded work queued behind them.
    # Each copy differs (X-N): identical bytes within the hour are one delivery's retry.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=16) as clients:
        await asyncio.gather(
            *(
                loop.run_in_executor(clients, _send, rig.port, user, b"X-N: %d\r\n" % n + msg)
                for user in users
                for n, msg in enumerate((HAM, SPAM, HAM, SPAM))
            )
        )
    for user in users:
        header = delivery_headers("a@example.net", user)
        ham = [header + b"X-N: %d\r\n" % n + HAM for n in (0, 2)]
        spam = [header + b"X-N: %d\r\n" % n + SPAM for n in (1, 3)]
        assert sorted(await rig.messages(user)) == ham
        assert sorted(await rig.messages(user, "junk")) == spam


async def test_the_users_script_runs_between_before_and_after(rig_factory: MakeRig) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(
        sieve=_sieve(scripts, before='require "imap4flags"; addflag "\\\\Seen";')
    )
    alice = await rig.add_user("alice@example.org")
    bob = await rig.add_user("bob@example.org")
    # Alice files everything to Archive herself: the after script does not run.
    scripts[int(alice.user.id)] = 'require "fileinto"; fileinto "Archive";'
    scripts[int(bob.user.id)] = 'if header :contains "subject" "hello" { discard; }'
    for user in ("alice@example.org", "bob@example.org"):
        await asyncio.to_thread(_send, rig.port, user, SPAM)
        await asyncio.to_thread(_send, rig.port, user, HAM)
    # Flagged copies wait in the holding mailbox until a session files them.
    archive = await rig.flagged("alice@example.org", "archive")
    assert [flags for _, flags in archive] == [frozenset({"\\Seen", "\\Recent"})] * 2
    assert await rig.messages("alice@example.org", "junk") == []
    assert await rig.messages("bob@example.org") == []  # HAM discarded
    assert len(await rig.messages("bob@example.org", "junk")) == 1


async def test_fileinto_own_folders_and_flags_wait_sealed_until_a_session_files_them(
    rig_factory: MakeRig,
) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    users = [await rig.add_user(f"u{n}@example.org") for n in range(3)]
    for account in users:
        scripts[int(account.user.id)] = (
            'require ["fileinto", "mailbox", "imap4flags"];\n'
            'if header :contains "subject" "hello" {\n'
            '  fileinto :create :flags ["\\\\Flagged", "work"] "Projects/Cust\u00f6mer";\n'
            '  addflag "\\\\Seen";\n'
            '  fileinto "Missing";\n'
            "  stop;\n}\n"
        )
    for account in users:
        for n in range(3):
            await asyncio.to_thread(_send, rig.port, account.user.email, b"X-N: %d\r\n" % n + HAM)
    async with rig.engine.connect() as conn:
        held = (
            await conn.execute(select(func.count()).select_from(t.cm_filing_notes))
        ).scalar_one()
        notes = [
            bytes(n)
            for n in (await conn.execute(select(t.cm_filing_notes.c.note_sealed))).scalars()
        ]
    assert held == 3 * 3 * 2  # nothing filed yet: delivery holds no key
    assert not any(b"Projects" in n or b"Missing" in n or b"work" in n for n in notes)
    async with rig.engine.connect() as conn:
        shown = (
            await conn.execute(
                select(t.cm_mailboxes.c.role, func.count())
                .select_from(t.cm_messages.join(t.cm_mailboxes))
                .group_by(t.cm_mailboxes.c.role)
            )
        ).all()
    assert [tuple(r) for r in shown] == [("filing", 18)]  # not in INBOX, not anywhere seen
    for account in users:
        email = account.user.email
        filed = await rig.flagged(email, "Projects/Cust\u00f6mer")
        assert [f for _, f in filed] == [frozenset({"\\Flagged", "work", "\\Recent"})] * 3
        # "Missing" has no :create: INBOX without the flags, as Pigeonhole's implicit
        # keep after a failed fileinto.
        inbox = await rig.flagged(email)
        assert [f for _, f in inbox] == [frozenset()] * 3
        assert sorted(m.split(b"X-N: ")[1][:1] for m, _ in inbox) == [b"0", b"1", b"2"]


async def test_reject_answers_550_for_that_recipient_only(rig_factory: MakeRig) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    alice = await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org")
    scripts[int(alice.user.id)] = 'require "reject"; reject "Not\r\nwanted here";'
    replies = await asyncio.to_thread(
        _transaction, rig.port, "a@example.net", ["alice@example.org", "bob@example.org"], HAM
    )
    assert replies[0].startswith(b"550 5.7.1 Not wanted here")
    assert replies[1].startswith(b"250")
    assert await rig.messages("alice@example.org") == []
    assert len(await rig.messages("bob@example.org")) == 1


async def test_a_runtime_error_keeps_the_message_in_inbox(
    rig_factory: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    alice = await rig.add_user("alice@example.org")
    scripts[int(alice.user.id)] = (
        'require ["fileinto", "include"];\nfileinto "Junk";\ninclude :global "missing";\n'
    )
    with caplog.at_level(logging.WARNING):
        await asyncio.to_thread(_send, rig.port, "alice@example.org", SPAM)
    assert len(await rig.messages("alice@example.org")) == 1
    assert await rig.messages("alice@example.org", "junk") == []
    assert "sieve error at active:3" in caplog.text
    assert "Buy" not in caplog.text and "s@bad.example" not in caplog.text


async def test_a_script_that_does_not_compile_is_skipped_not_fatal(rig_factory: MakeRig) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    alice = await rig.add_user("alice@example.org")
    scripts[int(alice.user.id)] = "if true { discard;"
    await asyncio.to_thread(_send, rig.port, "alice@example.org", SPAM)
    assert len(await rig.messages("alice@example.org", "junk")) == 1  # after still ran


async def test_subaddress_reaches_the_user_and_the_script_sees_the_detail(
    rig_factory: MakeRig,
) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    alice = await rig.add_user("alice@example.org")
    scripts[int(alice.user.id)] = (
        'require ["fileinto", "envelope", "subaddress"];\n'
        'if envelope :detail "to" "archive" { fileinto "Archive"; }'
    )
    await asyncio.to_thread(_send, rig.port, "alice+archive@example.org", HAM)
    await asyncio.to_thread(_send, rig.port, "alice+other@example.org", HAM)
    assert len(await rig.messages("alice@example.org", "archive")) == 1
    inbox = await rig.messages("alice@example.org")
    assert [m.split(b"\r\n")[1] for m in inbox] == [b"Delivered-To: alice+other@example.org"]
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(_send, rig.port, "nobody+x@example.org", HAM)
    assert refused.value.recipients["nobody+x@example.org"][0] == 550


async def test_duplicate_discards_the_second_copy_of_a_message_id(rig_factory: MakeRig) -> None:
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    alice = await rig.add_user("alice@example.org")
    scripts[int(alice.user.id)] = 'require "duplicate"; if duplicate { discard; stop; }'
    await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM)
    await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM, "other@example.net")
    await asyncio.to_thread(_send, rig.port, "alice@example.org", SPAM)
    assert len(await rig.messages("alice@example.org")) == 1
    assert len(await rig.messages("alice@example.org", "junk")) == 1
    async with rig.engine.connect() as conn:
        records = (await conn.execute(select(t.cm_sieve_records.c.record))).scalars().all()
    assert len(records) == 2  # keyed hashes: neither Message-ID is in the table
    assert all(b"example" not in bytes(r) for r in records)


async def test_a_redirect_whose_relay_is_down_is_kept(rig_factory: MakeRig) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts, relay=f"127.0.0.1:{port}"))
    alice = await rig.add_user("alice@example.org")
    scripts[int(alice.user.id)] = 'redirect "carol@example.net";'
    await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM)
    assert len(await rig.messages("alice@example.org")) == 1


async def test_a_retry_of_a_redirected_copy_does_not_send_it_again(
    rig_factory: MakeRig,
) -> None:
    sink = SmtpSink().start()
    try:
        scripts: dict[int, str] = {}
        rig = await rig_factory(sieve=_sieve(scripts, relay=sink.relay))
        alice = await rig.add_user("alice@example.org")
        bob = await rig.add_user("bob@example.org")
        redirect = (
            'require "copy"; redirect :copy "carol@example.net"; redirect :copy "dan@example.net";'
        )
        scripts[int(alice.user.id)] = redirect
        scripts[int(bob.user.id)] = redirect
        # The same transaction twice is what the MTA sends again when our 250 was lost.
        for _ in range(2):
            await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM)
        await asyncio.to_thread(_send, rig.port, "bob@example.org", HAM)
        await asyncio.to_thread(_send, rig.port, "alice@example.org", b"X-N: 2\r\n" + HAM)
        got = sorted((m.recipients[0], m.data.count(b"X-N: 2")) for m in sink.received())
        assert got == [
            ("carol@example.net", 0),
            ("carol@example.net", 0),  # bob's copy: another recipient's redirect
            ("carol@example.net", 1),
            ("dan@example.net", 0),
            ("dan@example.net", 0),
            ("dan@example.net", 1),
        ]
        assert len(await rig.messages("alice@example.org")) == 2  # the :copy kept, once each
        async with rig.engine.connect() as conn:
            records = (await conn.execute(select(t.cm_sieve_records.c.record))).scalars().all()
        assert len(records) == 6 and all(b"example" not in bytes(r) for r in records)
    finally:
        sink.stop()


async def test_discard_stores_nothing(rig_factory: MakeRig) -> None:
    rig = await rig_factory(sieve=_sieve(before="discard;"))
    await rig.add_user("alice@example.org")
    await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM)
    assert await _rows(rig) == 0


def test_a_global_script_that_does_not_compile_stops_the_start(tmp_path: Path) -> None:
    script = tmp_path / "after.sieve"
    script.write_text('require "fileinto";\nif true {\n  fileinto "Junk"\n}\n')
    config = load_config(None, **{"sieve.after": str(script)})
    with pytest.raises(ConfigError, match="line 4"):
        load_sieve_setup(config)


async def test_the_sealed_store_compiles_once_per_version_and_a_bad_row_defers(
    rig_factory: MakeRig,
) -> None:
    """With the sealed script store (`read_active_sync`, as `serve` wires it): a new
    version of the active script runs from the next delivery on; a row that does not
    open answers 451 for its recipient only and stores nothing for them."""
    setup = SieveSetup(settings=SieveSettings(recipient_delimiter="+"))
    made: list[SieveDelivery] = []

    def sieve(engine: AsyncEngine) -> SieveDelivery:
        made.append(SieveDelivery(engine, setup, read_active_sync))
        return made[0]

    rig = await rig_factory(sieve=sieve)
    alice = (await rig.add_user("alice@example.org")).user.id
    bob = (await rig.add_user("bob@example.org")).user.id
    limits = ScriptLimits()
    await put_script(rig.engine, alice, "s", 'require "fileinto"; fileinto "Junk";', limits)
    await set_active(rig.engine, alice, "s")
    await asyncio.to_thread(_send, rig.port, "alice@example.org", HAM)
    await put_script(rig.engine, alice, "s", 'require "fileinto"; fileinto "Archive";', limits)
    await asyncio.to_thread(_send, rig.port, "alice@example.org", b"X-N: 1\r\n" + HAM)
    assert len(await rig.messages("alice@example.org", "junk")) == 1
    assert len(await rig.messages("alice@example.org", "archive")) == 1

    # Bob's text sealed into alice's row: it does not open.
    await put_script(rig.engine, bob, "s", "discard;", limits)
    async with rig.engine.begin() as conn:
        s = t.cm_sieve_scripts
        bobs = (await conn.execute(select(s.c.body_sealed).where(s.c.user_id == bob))).scalar_one()
        await conn.execute(update(s).where(s.c.user_id == alice).values(body_sealed=bobs))
    before = await _rows(rig)
    replies = await asyncio.to_thread(
        _transaction,
        rig.port,
        "a@example.net",
        ["alice@example.org", "bob@example.org"],
        b"X-N: 2\r\n" + HAM,
    )
    assert replies[0].startswith(b"451 4.3.0") and replies[1].startswith(b"250")
    assert await _rows(rig) == before + 1  # bob's copy (no script active for him)


async def test_keeps_of_several_users_go_in_one_transaction_with_the_others(
    rig_factory: MakeRig,
) -> None:
    """A message to several users: those whose scripts only keep it (and those without
    a script of their own) are stored together, in ONE write transaction; a fileinto,
    a reject and a duplicate test are each still carried out. Several connections at
    once, each message to every user, then the scripts changed mid-way."""
    scripts: dict[int, str] = {}
    rig = await rig_factory(sieve=_sieve(scripts))
    names = ["ann", "bob", "cay", "dan", "eve"]
    users = {n: await rig.add_user(f"{n}@example.org", crypt=0 if n == "eve" else 2) for n in names}
    everyone = [f"{n}@example.org" for n in names]
    # ann: none of her own (the after-script only); bob: rules that do not match; cay:
    # everything to Archive; dan: rejects "win"; eve (crypt 0): duplicate, then keep.
    scripts[int(users["bob"].user.id)] = (
        'require "fileinto";\nif header :contains "subject" "nothing-here" { discard; }\n'
        'if address :domain :is "from" "nowhere.example" { fileinto "Archive"; }\n'
    )
    scripts[int(users["cay"].user.id)] = 'require "fileinto"; fileinto "Archive";'
    scripts[int(users["dan"].user.id)] = (
        'require "reject"; if header :contains "subject" "win" { reject "no thanks"; }'
    )
    scripts[int(users["eve"].user.id)] = 'require "duplicate"; if duplicate { discard; stop; }'
    warm = await asyncio.to_thread(_transaction, rig.port, "a@example.net", everyone, HAM)
    assert all(r.startswith(b"250") for r in warm)  # the first delivery makes the folders

    # The commits that stored messages: a commit after an INSERT INTO cm_messages.
    inserted: set[int] = set()
    commits: list[int] = []
    sync = _sync_engine(rig.engine)
    assert sync is not None

    def statement(conn: Connection, cursor: object, sql: str, *args: object) -> None:
        if sql.startswith("INSERT INTO cm_messages"):
            inserted.add(id(conn))

    def commit(conn: Connection) -> None:
        if id(conn) in inserted:
            inserted.discard(id(conn))
            commits.append(1)

    event.listen(sync, "before_cursor_execute", statement)
    event.listen(sync, "commit", commit)
    try:
        ham = b"X-N: 1\r\n" + HAM
        replies = await asyncio.to_thread(_transaction, rig.port, "a@example.net", everyone, ham)
    finally:
        event.remove(sync, "before_cursor_execute", statement)
        event.remove(sync, "commit", commit)
    assert all(r.startswith(b"250") for r in replies)
    # ann, bob and dan in one, cay's Archive copy in its own; eve's is a duplicate of the
    # first HAM's Message-ID, discarded. (One transaction per copy before: 4.)
    assert len(commits) == 2

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=6) as clients:
        sent = [b"X-N: %d\r\n" % n + (SPAM if n % 2 else HAM) for n in range(2, 8)]
        results = await asyncio.gather(
            *(
                loop.run_in_executor(
                    clients, _transaction, rig.port, "a@example.net", everyone, msg
                )
                for msg in sent
            )
        )
    for msg, answer in zip(sent, results, strict=True):
        spam = msg.endswith(SPAM)
        assert answer[3].startswith(b"550" if spam else b"250"), answer  # dan
        assert all(r.startswith(b"250") for i, r in enumerate(answer) if i != 3), answer
    # eve's duplicate ids (one per Message-ID) were remembered after the shared commit:
    # the next copy of a known id is discarded.
    scripts[int(users["bob"].user.id)] = 'require "fileinto"; fileinto "Archive";'
    again = b"X-N: 99\r\n" + HAM
    last = await asyncio.to_thread(_transaction, rig.port, "a@example.net", everyone, again)
    assert all(r.startswith(b"250") for r in last)

    def inbox_of(name: str, message: bytes) -> bytes:
        return delivery_headers("a@example.net", f"{name}@example.org") + message

    hams = [HAM, *(b"X-N: %d\r\n" % n + HAM for n in (1, 2, 4, 6))]
    spams = [b"X-N: %d\r\n" % n + SPAM for n in (3, 5, 7)]
    assert sorted(await rig.messages("ann@example.org")) == sorted(
        inbox_of("ann", m) for m in [*hams, again]
    )
    assert sorted(await rig.messages("ann@example.org", "junk")) == sorted(
        inbox_of("ann", m) for m in spams
    )
    assert sorted(await rig.messages("bob@example.org")) == sorted(inbox_of("bob", m) for m in hams)
    assert await rig.messages("bob@example.org", "archive") == [inbox_of("bob", again)]
    assert len(await rig.messages("cay@example.org", "archive")) == 9
    assert await rig.messages("cay@example.org") == []
    assert len(await rig.messages("dan@example.org")) == 6  # the hams; spam rejected
    # eve: the first HAM only (its Message-ID was remembered after the shared commit);
    # of the three SPAMs sent at once, at least the first, as duplicate promises no more
    # between parallel deliveries (nor does Pigeonhole's).
    assert await rig.messages("eve@example.org") == [inbox_of("eve", HAM)]
    junk = await rig.messages("eve@example.org", "junk")
    assert 1 <= len(junk) <= 3
    assert all(m.endswith(SPAM) for m in junk)

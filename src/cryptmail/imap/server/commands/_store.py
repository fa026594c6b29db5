"""Changing messages: STORE, COPY, MOVE, EXPUNGE and UID EXPUNGE (UIDPLUS, MOVE,
CONDSTORE's UNCHANGEDSINCE).

Blobs are shared by copies; after an expunge commits, only blobs no row names any more
are deleted from the blob store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cryptmail.db import run_async_transaction
from cryptmail.errors import MailboxNotFound
from cryptmail.imap.server._errors import CommandFailed, missing_code
from cryptmail.imap.server._learning import verdict_for
from cryptmail.imap.server._selected import InvalidSequence, SelectedMailbox
from cryptmail.imap.wire._requests import Copy, Expunge, Move, Store
from cryptmail.imap.wire._response import Atom, ImapValue, tagged, untagged
from cryptmail.imap.wire._sequence import RangeSet, format_number_runs
from cryptmail.store import (
    RECENT_FLAG,
    BlobId,
    MessageRow,
    change_flags,
    check_quota,
    copy_messages,
    expunge_messages,
    get_mailbox,
    mailbox_by_id,
    move_messages,
    unreferenced_blobs,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cryptmail.imap.server._session import Session


def _targets(selected: SelectedMailbox, command: Store | Copy | Move) -> list[tuple[int, int]]:
    try:
        found = selected.resolve(command.sequence, uid=command.uid)
    except InvalidSequence:
        raise CommandFailed("Invalid message sequence number.", status="BAD") from None
    return [(seq, uid) for seq, uid in found if not selected.is_expunged(uid)]


def _writable(selected: SelectedMailbox) -> None:
    if selected.read_only:
        raise CommandFailed("Mailbox is read-only.", "[READ-ONLY]")


async def drop_blobs(session: Session, blob_ids: Iterable[BlobId]) -> None:
    """Delete blobs no row references any more (after the commit that freed them)."""
    wanted = list(blob_ids)
    if not wanted:
        return
    async with session.context.engine.connect() as conn:
        unused = await unreferenced_blobs(conn, wanted)
    for blob_id in unused:
        await session.context.blobs.delete(blob_id)


async def _report_expunged(session: Session, selected: SelectedMailbox, uids: list[int]) -> None:
    if selected.live is not None:  # RFC 5267 REMOVEFROM in the numbers before the EXPUNGE
        await selected.live.expunging(session, selected, uids)
    sequences = selected.remove_uids(uids)
    if selected.qresync:
        if uids:
            runs = format_number_runs(sorted(uids))
            await session.send(b"* VANISHED " + runs.encode() + b"\r\n")
        return
    for seq in sequences:
        await session.send(untagged(seq, Atom("EXPUNGE")))


async def expunge_deleted(session: Session, only: RangeSet | None, *, report: bool) -> None:
    selected = session.mailbox
    rows: list[MessageRow] = [
        selected.rows[uid]
        for uid in selected.uids
        if "\\Deleted" in selected.rows[uid].flags
        and (only is None or uid in only)
        and not selected.is_expunged(uid)
    ]
    if not rows:
        return
    modseq, blob_ids = await expunge_messages(session.context.engine, selected.mailbox_id, rows)
    selected.note_own_modseq(modseq)
    uids = [row.uid for row in rows]
    if report:
        await _report_expunged(session, selected, uids)
    else:
        selected.remove_uids(uids)
    session.context.bus.publish(selected.account.user.id, selected.mailbox_id)
    await drop_blobs(session, blob_ids)


async def expunge_command(session: Session, command: Expunge) -> bytes:
    selected = session.mailbox
    _writable(selected)
    only = None
    if command.uids is not None:
        only = selected.uid_set(command.uids)
    await expunge_deleted(session, only, report=True)
    return tagged(command.tag, "OK", "Expunge completed.")


async def store(session: Session, command: Store) -> bytes:
    selected = session.mailbox
    _writable(selected)
    targets = _targets(selected, command)
    given = frozenset(command.flags)
    by_id = {selected.rows[uid].id: uid for _seq, uid in targets}
    # The change is applied to the stored flags under their lock, not to this
    # session's copy: another session may have changed them since it was loaded.
    done = await change_flags(
        session.context.engine,
        selected.account,
        selected.mailbox_id,
        list(by_id),
        command.mode,
        given,
        unchanged_since=command.unchanged_since,
    )
    modified = [by_id[row_id] for row_id in done.modified]
    changed_uids = [by_id[row_id] for row_id in done.changed]
    if command.unchanged_since is not None:
        selected.condstore = True
        session.enabled.add("CONDSTORE")
    if done.changed:
        for row_id, flags in done.changed.items():
            selected.update_flags(by_id[row_id], flags - {RECENT_FLAG}, done.modseq)
        selected.note_own_modseq(done.modseq)
        session.context.bus.publish(selected.account.user.id, selected.mailbox_id)
        # A keyword new to the mailbox is announced before the FETCHes that carry it.
        await selected.announce_keywords(session)
    # Only messages whose flags changed get a FETCH, as Dovecot does; .SILENT sends
    # them only under CONDSTORE, which needs their new MODSEQ (RFC 7162 3.1.3).
    report = set(changed_uids)
    if not command.silent or selected.condstore:
        for _seq, uid in targets:
            if uid in report and uid not in modified:
                await session.send(selected.flags_response(uid, with_uid=command.uid))
    code = None
    if modified:
        numbers = modified if command.uid else [selected.sequence_of(u) for u in modified]
        code = "[MODIFIED " + format_number_runs(sorted(numbers)) + "]"
    return tagged(command.tag, "OK", "Store completed.", code)


async def _copy(session: Session, command: Copy | Move, *, move: bool) -> bytes:
    selected = session.mailbox
    if move:
        _writable(selected)
    targets = _targets(selected, command)
    account = selected.account
    learner = session.context.learner
    source_role: str | None = None
    try:
        async with session.context.engine.connect() as conn:
            target = await get_mailbox(conn, account, command.mailbox)
            if learner is not None:
                source_role = (await mailbox_by_id(conn, None, selected.mailbox_id)).role
    except MailboxNotFound:
        raise CommandFailed("Mailbox does not exist.", missing_code(command.mailbox)) from None
    rows = [selected.rows[uid] for _seq, uid in targets]
    if not rows:
        verb = "Move" if move else "Copy"
        return tagged(command.tag, "OK", f"No messages found; {verb.lower()} completed.")
    engine = session.context.engine

    # Talks to the database through `conn` only: safe to run again (run_transaction).
    async def copy_rows(conn: AsyncConnection) -> tuple[list[tuple[int, int]], int, list[BlobId]]:
        if move:
            return await move_messages(conn, account, rows, selected.mailbox_id, target.id)
        await check_quota(  # only COPY: a MOVE adds nothing to the user's total
            conn,
            account.user,
            sum(row.size_rounded for row in rows),
            messages=len(rows),
            message_limit=session.config.quota.messages,
        )
        return await copy_messages(conn, account, rows, target.id), 0, []

    pairs, modseq, blob_ids = await run_async_transaction(engine, copy_rows, retry=True)
    session.context.bus.publish(account.user.id, target.id)
    if session.notify is not None and pairs:
        await session.notify.own_messages(session, target.id, len(pairs), max(p[1] for p in pairs))
    verdict = verdict_for(source_role, target.role) if learner is not None else None
    if learner is not None and verdict is not None and pairs:
        copied = {source_uid for source_uid, _new_uid in pairs}
        learner.submit(
            verdict,
            account,
            [(row.blob_id, row.size_rounded) for row in rows if row.uid in copied],
        )
    # No COPYUID when another session expunged every message first: RFC 4315 has no
    # empty UID set.
    code = None
    if pairs:
        values: list[ImapValue] = [
            Atom("COPYUID"),
            target.uidvalidity,
            Atom(format_number_runs(p[0] for p in pairs)),
            Atom(format_number_runs(p[1] for p in pairs)),
        ]
        code = "[" + untagged(*values)[2:-2].decode() + "]"
    if not move:
        return tagged(command.tag, "OK", "Copy completed.", code)
    selected.note_own_modseq(modseq)
    if code is not None:
        await session.send(b"* OK " + code.encode() + b" Moved.\r\n")
    await _report_expunged(session, selected, [row.uid for row in rows])
    session.context.bus.publish(account.user.id, selected.mailbox_id)
    await drop_blobs(session, blob_ids)
    return tagged(command.tag, "OK", "Move completed.")


async def copy(session: Session, command: Copy) -> bytes:
    return await _copy(session, command, move=False)


async def move(session: Session, command: Move) -> bytes:
    return await _copy(session, command, move=True)

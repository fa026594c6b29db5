"""APPEND and MULTIAPPEND, streamed: each message literal goes from the socket into a
new blob (sealed to the account's active key when the user's mail is encrypted) and
through the MIME analyzer in the same pass, so the stored cache is ready and the
message is never held whole. Rows are committed together when the command ends; a
command that fails or is cut short leaves no row, and its blobs are removed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cryptmail.concurrency import run_blocking
from cryptmail.db import utcnow
from cryptmail.errors import InputTooLarge, MailboxNotFound, ParseError, QuotaExceeded
from cryptmail.imap.message._analysis import MessageAnalysis, MessageAnalyzer
from cryptmail.imap.server._errors import CommandFailed, ConnectionClosed, missing_code
from cryptmail.imap.server.commands._catenate import Catenation, catenated
from cryptmail.imap.wire._reader import AppendData, AppendEnd, AppendStart, CommandReady
from cryptmail.imap.wire._requests import Append, AppendMessage, CatenatePart
from cryptmail.imap.wire._response import tagged
from cryptmail.imap.wire._sequence import format_number_runs
from cryptmail.store import (
    RECENT_FLAG,
    AppendItem,
    Mailbox,
    MessageCache,
    StoredBlob,
    append_rows,
    check_quota,
    get_mailbox,
    write_blob,
)

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

_ANALYZE_OFF_LOOP = 64 * 1024


@dataclass(frozen=True)
class _Received:
    blob: StoredBlob
    analysis: MessageAnalysis
    flags: frozenset[str]
    internal_date: dt.datetime | None


def _utc(stamp: dt.datetime | None) -> dt.datetime:
    if stamp is None:
        return utcnow()
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp.replace(microsecond=0)


async def _receive_one(session: Session, start: AppendStart) -> _Received:
    account = session.user_account
    analyzer = MessageAnalyzer()

    async def source() -> AsyncIterator[bytes]:
        while True:
            event = await session.next_event()
            if isinstance(event, AppendData):
                if len(event.data) >= _ANALYZE_OFF_LOOP:
                    await run_blocking(analyzer.feed, event.data)
                else:
                    analyzer.feed(event.data)
                yield event.data
            elif isinstance(event, AppendEnd):
                return

    recipient = account.active_key if account.user.crypt == 2 else None
    blob = await write_blob(session.context.blobs, recipient, source())
    analysis = await run_blocking(analyzer.finish)
    flags = frozenset(start.flags) - {RECENT_FLAG}
    return _Received(blob, analysis, flags, start.internal_date)


async def _receive_catenated(
    session: Session, message: AppendMessage, catenation: Catenation
) -> _Received:
    """A CATENATE message: its URLs checked first, then its parts streamed into a blob."""
    account = session.user_account
    parts = await catenation.resolve(message.catenate or ())
    analyzer = MessageAnalyzer()

    async def source() -> AsyncIterator[bytes]:
        async for piece in catenated(parts, session.config.imap.append_limit):
            if len(piece) >= _ANALYZE_OFF_LOOP:
                await run_blocking(analyzer.feed, piece)
            else:
                analyzer.feed(piece)
            yield piece

    recipient = account.active_key if account.user.crypt == 2 else None
    blob = await write_blob(session.context.blobs, recipient, source())
    analysis = await run_blocking(analyzer.finish)
    flags = frozenset(message.flags) - {RECENT_FLAG}
    return _Received(blob, analysis, flags, message.internal_date)


async def _in_order(
    session: Session, command: Append, streamed: list[_Received]
) -> list[_Received]:
    """The command's messages in order: streamed ones as received, CATENATE ones built
    now; what was built is added to `streamed` as it goes, so a failure removes it."""
    pending = list(streamed)
    ordered: list[_Received] = []
    catenation = Catenation(session)
    try:
        for message in command.messages:
            if message.catenate is None and message.data is None:
                ordered.append(pending.pop(0))
                continue
            if message.catenate is None:
                # A message literal after a CATENATE of one MULTIAPPEND: the reader
                # held it (within its literal limit) instead of streaming it.
                message = replace(message, catenate=(CatenatePart(text=message.data),))
            built = await _receive_catenated(session, message, catenation)
            streamed.append(built)
            ordered.append(built)
    finally:
        catenation.close()
    return ordered


async def _discard(session: Session, received: list[_Received]) -> None:
    for item in received:
        await session.context.blobs.delete(item.blob.blob_id)


async def _commit(session: Session, box: Mailbox, received: list[_Received]) -> list[int]:
    account = session.user_account
    items = [
        AppendItem(
            item.blob,
            _utc(item.internal_date),
            MessageCache(item.blob.size, item.blob.message_key, item.analysis.to_bytes()),
            # RFC 3501 6.3.11: whatever flags the client gave, \Recent is set too.
            item.flags | {RECENT_FLAG},
        )
        for item in received
    ]
    done = await append_rows(
        session.context.engine,
        account,
        box.id,
        items,
        message_limit=session.config.quota.messages,
    )
    return [uid for _row_id, uid, _modseq in done]


async def receive_append(session: Session, start: AppendStart) -> bytes:
    """Handle an APPEND from its first message literal to the command's end."""
    tag = start.tag
    if session.state == "nonauth":
        session.commands.abort_command()
        raise CommandFailed("Log in first.", status="BAD")
    try:
        async with session.context.engine.connect() as conn:
            box = await get_mailbox(conn, session.user_account, start.mailbox)
            await check_quota(
                conn,
                session.user_account.user,
                start.size,
                message_limit=session.config.quota.messages,
            )
    except MailboxNotFound:
        session.commands.abort_command()
        raise CommandFailed("Mailbox does not exist.", missing_code(start.mailbox)) from None
    except QuotaExceeded:
        session.commands.abort_command()
        raise
    received: list[_Received] = []
    event: object = start
    try:
        while True:
            if isinstance(event, AppendStart):
                if event.needs_continuation:
                    await session.send(b"+ Ready for literal data\r\n")
                received.append(await _receive_one(session, event))
            elif isinstance(event, CommandReady) and isinstance(event.command, Append):
                break
            event = await session.next_event()
        uids = await _commit(session, box, await _in_order(session, event.command, received))
    except ParseError as exc:
        await _discard(session, received)
        raise CommandFailed(exc.reason, status="BAD") from None
    except InputTooLarge as exc:
        await _discard(session, received)
        if not exc.recoverable:
            raise
        # A later message of a MULTIAPPEND over a limit: the reader skips the rest of
        # the command; none of its messages is stored.
        raise CommandFailed(exc.reason.removeprefix("[TOOBIG] ") + ".", "[TOOBIG]") from None
    except ConnectionClosed:
        await _discard(session, received)
        raise
    except BaseException:
        await _discard(session, received)
        raise
    session.context.bus.publish(session.user_account.user.id, box.id)
    if session.notify is not None and uids:
        await session.notify.own_messages(session, box.id, len(uids), max(uids))
    code = f"[APPENDUID {box.uidvalidity} {format_number_runs(uids)}]"
    return tagged(tag, "OK", "Append completed.", code)


async def append_without_literal(session: Session, command: Append) -> bytes:
    """An APPEND whose messages are all CATENATE (RFC 4469): none came as a message
    literal, so the streaming reader never started it."""
    if any(m.catenate is None and m.data is None for m in command.messages):
        raise CommandFailed("APPEND needs a message literal.", status="BAD")
    try:
        async with session.context.engine.connect() as conn:
            box = await get_mailbox(conn, session.user_account, command.mailbox)
    except MailboxNotFound:
        raise CommandFailed("Mailbox does not exist.", missing_code(command.mailbox)) from None
    built: list[_Received] = []
    try:
        uids = await _commit(session, box, await _in_order(session, command, built))
    except BaseException:
        await _discard(session, built)
        raise
    session.context.bus.publish(session.user_account.user.id, box.id)
    if session.notify is not None and uids:
        await session.notify.own_messages(session, box.id, len(uids), max(uids))
    code = f"[APPENDUID {box.uidvalidity} {format_number_runs(uids)}]"
    return tagged(command.tag, "OK", "Append completed.", code)

"""NOTIFY (RFC 5465): NOTIFY NONE and NOTIFY SET [STATUS].

A refused NOTIFY changes nothing: the watch in force stays. Refusals: an event we do not
support is ``NO [BADEVENT (...)]`` (METADATA and annotations are not served, so their
events are among them); more mailboxes than `imap.notify_max_mailboxes` to name, keep or
answer with STATUS is ``NO [NOTIFICATIONOVERFLOW]``. Grammar errors are BAD in the parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server.commands._fetch import fetch
from cryptmail.imap.server.commands._mailboxes import listed_names
from cryptmail.imap.server.commands._notify_watch import (
    MESSAGE_CHANGES,
    SUPPORTED_EVENTS,
    NotifyWatch,
)
from cryptmail.imap.wire._parser_notify import Notify
from cryptmail.imap.wire._requests import Fetch, FetchItem
from cryptmail.imap.wire._response import tagged
from cryptmail.imap.wire._sequence import SequenceSet, format_number_runs
from cryptmail.store import MailboxId, list_mailboxes, mailbox_state

if TYPE_CHECKING:
    from cryptmail.imap.server._selected import SelectedMailbox
    from cryptmail.imap.server._session import Session

_BADEVENT = "[BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")]"
_OVERFLOW = "[NOTIFICATIONOVERFLOW]"


async def fetch_new(
    session: Session, selected: SelectedMailbox, uids: list[int], items: tuple[FetchItem, ...]
) -> None:
    """MessageNew's FETCH for new messages of the selected mailbox, as UID FETCH would
    answer (its tagged reply is not sent: no command is in progress)."""
    sequence = SequenceSet.parse(format_number_runs(uids))
    await fetch(session, Fetch("*", sequence, items, uid=True))


async def notify(session: Session, command: Notify) -> bytes:
    account = session.user_account
    if command.groups is None:
        _end(session)
        return tagged(command.tag, "OK", "NOTIFY completed.")
    unsupported = {e for g in command.groups for e in g.events} - set(SUPPORTED_EVENTS)
    if unsupported:
        raise CommandFailed("Event not supported.", _BADEVENT)
    watch = NotifyWatch(session, command, fetch_new)
    if watch.too_many_names():
        raise CommandFailed("Too many mailboxes to watch.", _OVERFLOW)
    if not await watch.load_names():
        raise CommandFailed("Too many mailboxes to watch.", _OVERFLOW)
    statuses: list[bytes] = []
    if command.status:
        # RFC 5465 3.1: a STATUS for each watched mailbox but the selected one.
        selected_id = session.selected.mailbox_id if session.selected is not None else None
        async with session.context.engine.connect() as conn:
            boxes = await list_mailboxes(conn, account.user.id, account)
            names = listed_names(boxes)  # as LIST shows them: NFC
            watched = []
            for box in boxes:
                name = names.get(MailboxId(box.id), box.name)
                events = watch.events_for(name) & MESSAGE_CHANGES
                if events and box.id != selected_id:
                    watched.append((box, name, events))
            if len(watched) > watch.max_mailboxes:
                raise CommandFailed("Too many mailboxes to watch.", _OVERFLOW)
            for box, name, events in watched:
                state = await mailbox_state(conn, box.id)
                if state is None:  # deleted meanwhile
                    continue
                counters = (state.messages, state.uidnext, state.highest_modseq)
                watch.remember(MailboxId(box.id), counters)
                statuses.append(watch.status_line(session, name, counters, box.uidvalidity, events))
    _end(session)
    watch.start()
    session.notify = watch
    for line in statuses:
        await session.send(line)
    return tagged(command.tag, "OK", "NOTIFY completed.")


def _end(session: Session) -> None:
    if session.notify is not None:
        session.notify.stop()
        session.notify = None

"""SORT, UID SORT (RFC 5256, ESORT of RFC 5267, DISPLAY keys of RFC 5957) and THREAD.

The search program picks the messages (as SEARCH does); their sort keys come from the
selected mailbox's in-memory table (`load_sort_keys`), and the ordering runs in a
worker thread, so a SORT of 50,000 messages does not stall other sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._sort import SortItem, sort_messages
from cryptmail.imap.message._sortkeys import SortKeys
from cryptmail.imap.message._thread import ThreadItem, thread_ordered_subject, thread_references
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server._sortkeys import load_sort_keys, shared_sort_keys
from cryptmail.imap.server.commands._context import (
    Matcher,
    Orderer,
    frozen_program,
    start_live_search,
)
from cryptmail.imap.server.commands._esearch import esearch_line
from cryptmail.imap.server.commands._search import find_messages
from cryptmail.imap.wire._requests import SearchAnd, SearchSequence, Sort, Thread
from cryptmail.imap.wire._response import tagged
from cryptmail.imap.wire._sequence import SequenceSet

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

log = logging.getLogger(__name__)

ALL_PROGRAM: Final = SearchAnd((SearchAnd(()),))
_UNREADABLE: Final = SortKeys(None, "", False, "", "", "", "", "", None, ())
"""Keys of a message that cannot be read: it sorts as one with empty fields, and is
still listed (leaving it out would tell the client it does not match)."""


async def _keyed(
    selected: SelectedMailbox, program: SearchAnd, uid: bool
) -> list[tuple[int, int, float, SortKeys]]:
    """(number, sequence, arrival, keys) of every message the program matches."""
    if program == ALL_PROGRAM:  # the common case: no search views to build
        found = [
            (seq, selected.rows[u])
            for seq, u in enumerate(selected.uids, start=1)
            if not selected.is_expunged(u)
        ]
    else:
        views = await find_messages(selected, program)
        found = [(view.sequence, selected.rows[view.uid]) for view in views]
    try:
        table = await load_sort_keys(selected, [row for _seq, row in found])
    except CryptmailError as exc:
        log.warning("sort keys in mailbox %s: %s", selected.mailbox_id, exc)
        table = shared_sort_keys(selected)
    get = table.get
    return [
        (row.uid if uid else seq, seq, row.internal_date.timestamp(), get(row.uid, _UNREADABLE))
        for seq, row in found
    ]


def _ordered(criteria: tuple[tuple[str, bool], ...]) -> Orderer:
    """A live sort's ordering: the given UIDs in ``criteria`` order."""

    async def order(selected: SelectedMailbox, uids: list[int]) -> list[int]:
        program = SearchAnd((SearchSequence(SequenceSet.of(*uids), uid=True),))
        keyed = await _keyed(selected, program, True)
        items = [SortItem(number, seq, arrival, keys) for number, seq, arrival, keys in keyed]
        return [item.number for item in await run_blocking(sort_messages, items, criteria)]

    return order


def _matcher(program: SearchAnd) -> Matcher:
    async def matches(selected: SelectedMailbox, uids: Collection[int]) -> set[int]:
        return {view.uid for view in await find_messages(selected, program, only=uids)}

    return matches


async def sort(session: Session, command: Sort) -> bytes:
    selected = session.mailbox
    keyed = await _keyed(selected, command.program, command.uid)
    items = [SortItem(number, seq, arrival, keys) for number, seq, arrival, keys in keyed]
    ordered = await run_blocking(sort_messages, items, command.criteria)
    numbers = [item.number for item in ordered]
    if command.returns is not None:
        if "UPDATE" in command.returns:
            uids = [n if command.uid else selected.uids[n - 1] for n in numbers]
            program = frozen_program(command.program, selected)
            await start_live_search(
                session, command.tag, uids, _matcher(program), uid=command.uid,
                partial=command.partial is not None, order=_ordered(command.criteria),
            )  # fmt: skip
        line = esearch_line(
            command.tag, numbers, command.returns, uid=command.uid, partial=command.partial,
            ordered=True,
        )  # fmt: skip
        if line:
            await session.send(line)
    else:
        await session.send(b"* SORT" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
    return tagged(command.tag, "OK", "Sort completed.")


async def thread(session: Session, command: Thread) -> bytes:
    keyed = await _keyed(session.mailbox, command.program, command.uid)
    items = [
        ThreadItem(
            number, seq, arrival if keys.date is None else keys.date, keys.subject, keys.reply,
            keys.message_id, keys.references,
        )
        for number, seq, arrival, keys in keyed
    ]  # fmt: skip
    algorithm = thread_references if command.algorithm == "REFERENCES" else thread_ordered_subject
    body = await run_blocking(algorithm, items)
    await session.send(b"* THREAD" + (b" " + body if body else b"") + b"\r\n")
    return tagged(command.tag, "OK", "Thread completed.")

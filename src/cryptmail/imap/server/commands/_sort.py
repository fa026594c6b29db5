"""SORT, UID SORT (RFC 5256, ESORT of RFC 5267, DISPLAY keys of RFC 5957) and THREAD.

The search program picks the messages (as SEARCH does); their sort keys come from the
selected mailbox's in-memory table (`load_sort_keys`), and the ordering runs in a
worker thread, so a SORT of 50,000 messages does not stall other sessions.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._sort import SortItem, sort_messages
from cryptmail.imap.message._sortkeys import SortKeys
from cryptmail.imap.message._thread import ThreadItem, thread_ordered_subject, thread_references
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server._sortkeys import load_sort_keys, shared_sort_keys
from cryptmail.imap.server.commands._search import find_messages
from cryptmail.imap.wire._requests import SearchAnd, Sort, Thread
from cryptmail.imap.wire._response import tagged

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

log = logging.getLogger(__name__)

ALL_PROGRAM: Final = SearchAnd((SearchAnd(()),))
_UNREADABLE: Final = SortKeys(None, "", False, "", "", "", "", "", None, ())
"""Keys of a message that cannot be read: it sorts as one with empty fields, and is
still listed (leaving it out would tell the client it does not match)."""


async def _matched(selected: SelectedMailbox, program: SearchAnd, uid: bool) -> dict[int, int]:
    """UID to the number to answer with (UID or sequence number) of every message the
    program matches, in mailbox order, with every one's keys loaded (as far as readable)."""
    uids = selected.uids
    if program == ALL_PROGRAM:  # the common case: no search views to build
        if not any(selected.is_expunged(u) for u in uids):
            numbers = uids if uid else range(1, len(uids) + 1)
            wanted = dict(zip(uids, numbers, strict=True))
        else:
            wanted = {
                u: u if uid else seq
                for seq, u in enumerate(uids, start=1)
                if not selected.is_expunged(u)
            }
    else:
        views = await find_messages(selected, program)
        wanted = {view.uid: view.uid if uid else view.sequence for view in views}
    table = shared_sort_keys(selected)
    missing = [selected.rows[u] for u in wanted if u not in table]
    if missing:
        try:
            await load_sort_keys(selected, missing)
        except CryptmailError as exc:
            log.warning("sort keys in mailbox %s: %s", selected.mailbox_id, exc)
    return wanted


def _keyed(
    selected: SelectedMailbox, wanted: dict[int, int]
) -> Iterator[tuple[int, int, float, SortKeys]]:
    """(number, sequence, arrival, keys) of the wanted messages: the general path."""
    get = shared_sort_keys(selected).get
    rows = selected.rows
    for u, number in wanted.items():
        yield (
            number,
            selected.sequence_of(u),
            rows[u].internal_date.timestamp(),
            get(u, _UNREADABLE),
        )


def _complete(selected: SelectedMailbox, wanted: dict[int, int]) -> bool:
    table = shared_sort_keys(selected)
    return all(u in table for u in wanted)


def _number_list(numbers: Sequence[int]) -> bytes:
    """A sequence set that keeps the given order: ascending runs become ranges."""
    parts: list[bytes] = []
    index = 0
    while index < len(numbers):
        end = index
        while end + 1 < len(numbers) and numbers[end + 1] == numbers[end] + 1:
            end += 1
        if end > index:
            parts.append(b"%d:%d" % (numbers[index], numbers[end]))
        else:
            parts.append(b"%d" % numbers[index])
        index = end + 1
    return b",".join(parts)


def _esort(command: Sort, numbers: list[int]) -> bytes:
    """The RFC 5267 answer: MIN and MAX are the first and last in the sort order."""
    out = b'* ESEARCH (TAG "' + command.tag.encode() + b'")'
    if command.uid:
        out += b" UID"
    returns = set(command.returns or ()) or {"ALL"}
    if numbers and "MIN" in returns:
        out += b" MIN %d" % numbers[0]
    if numbers and "MAX" in returns:
        out += b" MAX %d" % numbers[-1]
    if numbers and "ALL" in returns:
        out += b" ALL " + _number_list(numbers)
    if "COUNT" in returns:
        out += b" COUNT %d" % len(numbers)
    return out + b"\r\n"


async def sort(session: Session, command: Sort) -> bytes:
    selected = session.mailbox
    wanted = await _matched(selected, command.program, command.uid)
    numbers: list[int] | None = None
    if len(command.criteria) == 1:  # one criterion: the order is kept ready, a filter
        name, reverse = command.criteria[0]
        numbers = shared_sort_keys(selected).sorted_numbers(name, reverse, wanted)
    if numbers is None:
        items = [SortItem(*entry) for entry in _keyed(selected, wanted)]
        numbers = [
            item.number for item in await run_blocking(sort_messages, items, command.criteria)
        ]
    if command.returns is not None:
        await session.send(_esort(command, numbers))
    else:
        await session.send(
            b"* SORT " + " ".join(map(str, numbers)).encode() + b"\r\n"
            if numbers
            else b"* SORT\r\n"
        )
    return tagged(command.tag, "OK", "Sort completed.")


async def thread(session: Session, command: Thread) -> bytes:
    selected = session.mailbox
    wanted = await _matched(selected, command.program, command.uid)
    table = shared_sort_keys(selected)
    signature = array("I", wanted).tobytes() + array("I", wanted.values()).tobytes()
    body = table.thread_answer(command.algorithm, command.uid, signature)
    if body is None:
        complete = _complete(selected, wanted)
        items = [
            ThreadItem(
                number, seq, arrival if keys.date is None else keys.date, keys.subject,
                keys.reply, keys.message_id, keys.references,
            )
            for number, seq, arrival, keys in _keyed(selected, wanted)
        ]  # fmt: skip
        algorithm = (
            thread_references if command.algorithm == "REFERENCES" else thread_ordered_subject
        )
        body = await run_blocking(algorithm, items)
        if complete:  # an unreadable message's place may change once it is readable
            table.keep_thread_answer(command.algorithm, command.uid, signature, body)
    await session.send(b"* THREAD" + (b" " + body if body else b"") + b"\r\n")
    return tagged(command.tag, "OK", "Thread completed.")

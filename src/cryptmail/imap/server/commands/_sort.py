"""SORT, UID SORT (RFC 5256, ESORT of RFC 5267, DISPLAY keys of RFC 5957) and THREAD.

The search program picks the messages (as SEARCH does); their sort keys come from the
selected mailbox's in-memory table (`load_sort_keys`, a `SortIndex`). A SORT by one
criterion filters the order the table keeps ready, on the loop (a few milliseconds at
50,000 messages, less than a hop to a worker thread and back under load); several
criteria and THREAD run their algorithm in a worker thread. A SORT by ARRIVAL alone
needs no key (the internal date is in the listing): while the table lacks some, it is
answered from the listing. An answer the same view had already (same messages, same
numbers, no key added or dropped since) is sent again as it was kept.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Final

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._sort import SortItem, sort_messages
from cryptmail.imap.message._sortkeys import SortKeys
from cryptmail.imap.message._thread import ThreadItem, thread_ordered_subject, thread_references
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server._sortkeys import load_sort_keys, shared_sort_keys, unpack_keys
from cryptmail.imap.server._writes import SessionWrites
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


async def _matched(
    selected: SelectedMailbox,
    program: SearchAnd,
    uid: bool,
    later: SessionWrites | None = None,
    *,
    keys: bool = True,
) -> dict[int, int]:
    """UID to the number to answer with (UID or sequence number) of every message the
    program matches, in mailbox order, with every one's keys loaded unless ``keys`` is
    false (as far as readable; the keys made are recorded through ``later`` when given,
    see `load_sort_keys`)."""
    uids = selected.uids
    if program == ALL_PROGRAM:  # the common case: no search views to build
        if not selected.expunge_pending:
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
    if not keys:
        return wanted
    table = shared_sort_keys(selected)
    missing = [selected.rows[u] for u in table.missing(wanted)]
    if missing:
        try:
            await load_sort_keys(selected, missing, later)
        except CryptmailError as exc:
            log.warning("sort keys in mailbox %s: %s", selected.mailbox_id, exc)
    return wanted


def _keyed(
    selected: SelectedMailbox, wanted: dict[int, int]
) -> Iterator[tuple[int, int, float, SortKeys]]:
    """(number, position, arrival, keys) of the wanted messages: the general path (call
    `unpack_keys` first). The position is the UID: it orders as the sequence number does,
    without a search."""
    get = shared_sort_keys(selected).get
    rows = selected.rows
    for u, number in wanted.items():
        keys = get(u, _UNREADABLE)
        yield (
            number,
            u,
            keys.arrival if keys is not _UNREADABLE else rows[u].internal_date.timestamp(),
            keys,
        )


def _by_arrival(selected: SelectedMailbox, wanted: dict[int, int], reverse: bool) -> list[int]:
    """The numbers of ``wanted`` by internal date, from the listing: no key needed.
    Equal dates stay in mailbox order, REVERSE too (RFC 5256, as `SortIndex` does)."""
    rows = selected.rows
    if reverse:
        order = sorted(wanted, key=lambda u: -rows[u].internal_date.timestamp())
    else:
        order = sorted(wanted, key=lambda u: rows[u].internal_date.timestamp())
    return [wanted[u] for u in order]


def _signature(wanted: dict[int, int]) -> bytes:
    """The messages and the numbers an answer names, compared in C (no per-message object)."""
    return array("I", wanted).tobytes() + array("I", wanted.values()).tobytes()


def _ordered(criteria: tuple[tuple[str, bool], ...]) -> Orderer:
    """A live sort's ordering: the given UIDs in ``criteria`` order."""

    async def order(selected: SelectedMailbox, uids: list[int]) -> list[int]:
        program = SearchAnd((SearchSequence(SequenceSet.of(*uids), uid=True),))
        wanted = await _matched(selected, program, True)
        await unpack_keys(shared_sort_keys(selected))
        items = [SortItem(*entry) for entry in _keyed(selected, wanted)]
        return [item.number for item in await run_blocking(sort_messages, items, criteria)]

    return order


def _matcher(program: SearchAnd) -> Matcher:
    async def matches(selected: SelectedMailbox, uids: Collection[int]) -> set[int]:
        return {view.uid for view in await find_messages(selected, program, only=uids)}

    return matches


async def sort(session: Session, command: Sort) -> bytes:
    selected = session.mailbox
    # ARRIVAL is the internal date, which the listing holds: a first SORT by it (the
    # order a client asks when it sorts by "received") loads no key (10,000 delivered
    # messages' entries cost 100 ms); later ones use the table's ready order if full.
    by_arrival = all(name == "ARRIVAL" for name, _reverse in command.criteria)
    wanted = await _matched(
        selected, command.program, command.uid, session.writes, keys=not by_arrival
    )
    table = shared_sort_keys(selected)
    asked = ("SORT", tuple(command.criteria))
    signature = _signature(wanted)
    if command.returns is None and (kept := table.answer(asked, signature)) is not None:
        await session.send(kept)
        return tagged(command.tag, "OK", "Sort completed.")
    numbers: list[int] | None = None
    if len(command.criteria) == 1:  # one criterion: the order is kept ready, a filter
        name, reverse = command.criteria[0]
        numbers = table.sorted_numbers(name, reverse, wanted)
    complete = numbers is not None or not table.missing(wanted)
    if numbers is None and by_arrival:
        numbers, complete = _by_arrival(selected, wanted, command.criteria[0][1]), True
    if numbers is None:
        await unpack_keys(shared_sort_keys(selected))
        items = [SortItem(*entry) for entry in _keyed(selected, wanted)]
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
        return tagged(command.tag, "OK", "Sort completed.")
    answer = (
        b"* SORT"
        + b"".join((b" ", " ".join(map(str, numbers)).encode()) if numbers else ())
        + b"\r\n"
    )
    if complete:  # an unreadable message's place may change once it is readable
        table.keep_answer(asked, signature, answer)
    await session.send(answer)
    return tagged(command.tag, "OK", "Sort completed.")


async def thread(session: Session, command: Thread) -> bytes:
    selected = session.mailbox
    wanted = await _matched(selected, command.program, command.uid, session.writes)
    table = shared_sort_keys(selected)
    asked = ("THREAD", command.algorithm)
    signature = _signature(wanted)
    answer = table.answer(asked, signature)
    if answer is None:
        complete = not table.missing(wanted)
        await unpack_keys(shared_sort_keys(selected))
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
        answer = b"* THREAD" + (b" " + body if body else b"") + b"\r\n"
        if complete:  # an unreadable message's place may change once it is readable
            table.keep_answer(asked, signature, answer)
    await session.send(answer)
    return tagged(command.tag, "OK", "Thread completed.")

"""RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT: live searches and CANCELUPDATE.

``SEARCH RETURN (UPDATE)`` (or SORT) leaves a live search behind, named by the command's
tag. Whenever the session writes mailbox updates (after any command, in IDLE), each
live search looks at the messages that changed since (`SelectedMailbox.touched`: new,
flags changed, expunged) and tells the client what joined or left its result:
``* ESEARCH (TAG "t") [UID] ADDTO (position set)`` and ``REMOVEFROM (position set)``,
position 0 for SEARCH and the place in the sort order for SORT. Only the changed
messages are evaluated, never the whole mailbox again.

Numbers are UIDs after UID SEARCH, sequence numbers otherwise; a message that leaves
because it was expunged is reported before the EXPUNGE that shifts the numbers (as
Dovecot does), one that arrives after the EXISTS that numbers it.

Bounds: at most `MAX_LIVE_SEARCHES` per session; UPDATE with PARTIAL, a tag already
live or one over the bound is refused with ``* NO [NOUPDATE "tag"]`` and the search is
answered without updates (RFC 5267 section 4.2). Live searches end with the selected
mailbox (SELECT, EXAMINE, CLOSE, UNSELECT) or by CANCELUPDATE.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.wire._requests import (
    CancelUpdate,
    SearchAnd,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchSequence,
)
from cryptmail.imap.wire._response import tagged
from cryptmail.imap.wire._sequence import RangeSet, SequenceSet

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

MAX_LIVE_SEARCHES: Final = 8
"""Live searches one session may hold; each costs an evaluation of changed messages
at every update, so a client cannot make a session's NOOP arbitrarily slow."""

Matcher = Callable[[SelectedMailbox, Collection[int]], Awaitable[set[int]]]
"""Which of the given UIDs the live search's program matches now."""
Orderer = Callable[[SelectedMailbox, list[int]], Awaitable[list[int]]]
"""The given UIDs in the live sort's order (SORT only)."""


@dataclass(slots=True)
class LiveSearch:
    """One search the client asked to keep current; ``members`` are UIDs, ascending
    for SEARCH, in sort order for SORT (``order`` set)."""

    tag: str
    uid: bool
    members: list[int]
    matches: Matcher
    order: Orderer | None = None
    _set: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._set = set(self.members)

    def _number(self, selected: SelectedMailbox, uid: int) -> int:
        return uid if self.uid else selected.sequence_of(uid)

    def _line(self, what: bytes, pairs: list[tuple[int, list[int]]]) -> bytes:
        body = b" ".join(b"%d %s" % (pos, _set_text(nums)) for pos, nums in pairs)
        head = b'* ESEARCH (TAG "' + self.tag.encode() + b'")' + (b" UID" if self.uid else b"")
        return head + b" " + what + b" (" + body + b")\r\n"

    def remove(self, selected: SelectedMailbox, gone: Collection[int]) -> bytes:
        """REMOVEFROM for members among ``gone`` (numbered as the client knows them)."""
        leaving = [uid for uid in self.members if uid in gone]
        if not leaving:
            return b""
        if self.order is None:
            numbers = [self._number(selected, uid) for uid in leaving]
            line = self._line(b"REMOVEFROM", [(0, numbers)])
        else:
            # Last first, so each position holds when the client applies them in turn.
            places = [(i + 1, uid) for i, uid in enumerate(self.members) if uid in gone]
            pairs = [(pos, [self._number(selected, uid)]) for pos, uid in reversed(places)]
            line = self._line(b"REMOVEFROM", pairs)
        self.members = [uid for uid in self.members if uid not in gone]
        self._set.difference_update(gone)
        return line

    async def add(self, selected: SelectedMailbox, joined: set[int]) -> bytes:
        """ADDTO for the UIDs that now match and were not members."""
        fresh = joined - self._set
        if not fresh:
            return b""
        if self.order is None:
            for uid in sorted(fresh):
                bisect.insort(self.members, uid)
            numbers = [self._number(selected, uid) for uid in sorted(fresh)]
            line = self._line(b"ADDTO", [(0, numbers)])
        else:
            self.members = await self.order(selected, [*self.members, *fresh])
            # Ascending final positions: each insert leaves the earlier ones in place.
            pairs = [
                (i + 1, [self._number(selected, uid)])
                for i, uid in enumerate(self.members)
                if uid in fresh
            ]
            line = self._line(b"ADDTO", pairs)
        self._set |= fresh
        return line


def _set_text(numbers: list[int]) -> bytes:
    return str(RangeSet.from_numbers(numbers)).encode()


class LiveSearches:
    """A selected mailbox's live searches; `SelectedMailbox.send_updates` calls
    `expunging` before it reports expunges and `changed` after the rest."""

    def __init__(self) -> None:
        self.by_tag: dict[str, LiveSearch] = {}

    async def expunging(
        self, session: Session, selected: SelectedMailbox, gone: Collection[int]
    ) -> None:
        for live in self.by_tag.values():
            line = live.remove(selected, gone)
            if line:
                await session.send(line)

    async def changed(self, session: Session, selected: SelectedMailbox) -> None:
        touched = {uid for uid in selected.touched if not selected.is_expunged(uid)}
        selected.touched -= touched
        if not touched:
            return
        present = {uid for uid in touched if uid in selected.rows}
        for live in self.by_tag.values():
            joined = await live.matches(selected, present) if present else set()
            line = live.remove(selected, touched - joined)
            if line:
                await session.send(line)
            line = await live.add(selected, joined)
            if line:
                await session.send(line)


def frozen_program(program: SearchAnd, selected: SelectedMailbox) -> SearchAnd:
    """The program with ``$`` replaced by the UIDs it names now: a live search keeps
    meaning what it meant when asked, whatever a later SAVE stores."""
    saved = SequenceSet.of(*sorted(selected.saved))

    def freeze(key: SearchKey) -> SearchKey:
        if isinstance(key, SearchSequence) and key.sequence.saved:
            return SearchSequence(saved, uid=True)
        if isinstance(key, SearchAnd):
            return SearchAnd(tuple(freeze(k) for k in key.keys))
        if isinstance(key, SearchOr):
            return SearchOr(freeze(key.left), freeze(key.right))
        if isinstance(key, SearchNot):
            return SearchNot(freeze(key.key))
        return key

    return SearchAnd(tuple(freeze(k) for k in program.keys))


async def start_live_search(
    session: Session,
    tag: str,
    members: list[int],
    matches: Matcher,
    *,
    uid: bool,
    partial: bool,
    order: Orderer | None = None,
) -> None:
    """Keep a search current, or say ``* NO [NOUPDATE "tag"]`` and do not."""
    selected = session.mailbox
    live = selected.live
    if not isinstance(live, LiveSearches):
        live = LiveSearches()
    reason = None
    if partial:
        reason = b"UPDATE is not kept for a PARTIAL result."
    elif tag in live.by_tag:
        reason = b"A live search with this tag exists already."
    elif len(live.by_tag) >= MAX_LIVE_SEARCHES:
        reason = b"Too many live searches; cancel one first."
    if reason is not None:
        await session.send(b'* NO [NOUPDATE "' + tag.encode() + b'"] ' + reason + b"\r\n")
        return
    live.by_tag[tag] = LiveSearch(tag, uid, list(members), matches, order)
    selected.live = live


async def cancel_update(session: Session, command: CancelUpdate) -> bytes:
    """CANCELUPDATE "tag" ...: end those live searches; NO (changing nothing) if one
    of the tags names none, as Dovecot answers."""
    live = session.mailbox.live
    known = live.by_tag if isinstance(live, LiveSearches) else {}
    if any(tag not in known for tag in command.tags):
        raise CommandFailed("Unknown tag.")
    for tag in command.tags:
        known.pop(tag, None)
    return tagged(command.tag, "OK", "Updates cancelled.")

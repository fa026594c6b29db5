"""A mailbox's opened message list, kept in this process's memory between SELECTs.

Opening every row's sealed flags at every SELECT cost about 6 us a message (6.8 ms for
1,000). A `MailboxListing` holds the rows of one mailbox as the unlocked account sees
them (UID, row id, modseq, flags, ...) and is brought up to date from the database each
time it is used, with the work of what changed only:

* the caller passes the mailbox row it has just read; when its highest modseq is not
  above the listing's, nothing that bumps the modseq has happened since (flag changes,
  deliveries and appends in any process or node, copies, moves, expunges) and no row
  is read;
* otherwise the rows changed since (`load_messages(since_modseq=...)`) and the UIDs
  expunged since (`vanished_since`, from cm_expunged) are read and applied;
* rows that no session had claimed yet are read again by id while there are any: a
  claim (`claim_messages`) and a first indexing (`save_cache`) give a row its first
  flags without a new modseq, in whatever process did it.

Two things a row can change without a new modseq are not followed: whether its cache
is sealed (`indexed`; FETCH reads the cache itself) and its blob after `mailbox
encrypt` (FETCH re-reads a row whose blob is gone and calls `replace_row`).

Memory only, never written anywhere. The listings belong to one `UnlockedAccount`
object (the one the login cache shares between a user's sessions) and go when it does:
when the user's last session has ended and the login cache has dropped the account, or
at once with `drop_listings` (a changed credential generation). A session borrows the
listing's dict and list of rows at SELECT instead of copying them (`borrow`); whoever
changes them afterwards, the listing or the session, copies them first.
"""

from __future__ import annotations

import asyncio
import bisect
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Final

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import run_transaction
from cryptmail.db import tables as t
from cryptmail.errors import MailboxNotFound
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId, MailboxId
from cryptmail.store._mailboxes import Mailbox
from cryptmail.store._messages import (
    RECENT_FLAG,
    MessageRow,
    load_messages,
    load_rows,
    vanished_since,
)

LISTINGS_PER_ACCOUNT: Final = 16
"""Mailboxes whose listing an account keeps; the least recently used go first."""

_COUNTERS: Final = select(t.cm_mailboxes.c.highest_modseq, t.cm_mailboxes.c.uidnext).where(
    t.cm_mailboxes.c.id == bindparam("mailbox_id")
)
_SEEN: Final = "\\Seen"
_DELETED: Final = "\\Deleted"


class MailboxListing:
    """The rows of one mailbox (one UIDVALIDITY) and counts over them; see the module
    docstring. Only `sync` and the `note_*` / `replace_row` methods change it."""

    def __init__(self, mailbox_id: MailboxId, uidvalidity: int) -> None:
        self.mailbox_id = mailbox_id
        self.uidvalidity = uidvalidity
        self.highest_modseq = 0
        """The modseq the rows are current to; 0 before the first load."""
        self.rows: dict[int, MessageRow] = {}
        """By UID, flags as stored (a stored \\Recent included)."""
        self.uids: list[int] = []
        self.fresh: set[int] = set()
        """UIDs no session has claimed, or whose stored flags carry \\Recent."""
        self.unseen: list[int] = []
        """UIDs without \\Seen, ascending."""
        self.deleted = 0
        self.deleted_size = 0
        """Sum of the padded sizes of the rows with \\Deleted (what EXPUNGE frees)."""
        self.size = 0
        self.keywords: Counter[str] = Counter()
        """How many rows carry each keyword."""
        self._unclaimed: set[int] = set()
        self._shared = False
        self._lock = asyncio.Lock()

    # -- reading ---------------------------------------------------------------------------

    def borrow(self) -> tuple[dict[int, MessageRow], list[int]]:
        """The rows and UIDs themselves, for a session to read; it must copy them before
        it changes them, and the listing copies them before its next change."""
        self._shared = True
        return self.rows, self.uids

    @property
    def first_unseen(self) -> int | None:
        """The lowest UID without \\Seen, or None."""
        return self.unseen[0] if self.unseen else None

    @property
    def recent(self) -> int:
        """Messages new to every session (STATUS RECENT)."""
        return len(self.fresh)

    # -- changing --------------------------------------------------------------------------

    async def sync(self, engine: AsyncEngine, account: UnlockedAccount, box: Mailbox) -> None:
        """Bring the rows up to `box`, the mailbox row as the caller has just read it."""
        async with self._lock:
            since = self.highest_modseq
            # A `box` older than the listing was read before another session's sync (the
            # modseq only grows): the listing is as current, nothing to read for it.
            if since and box.highest_modseq <= since and not self._unclaimed:
                return
            async with engine.connect() as conn:
                if since == 0:
                    rows = await load_messages(conn, account, self.mailbox_id)
                    self._reset(rows)
                else:
                    gone = await vanished_since(conn, self.mailbox_id, since)
                    changed = await load_messages(
                        conn, account, self.mailbox_id, since_modseq=since
                    )
                    loaded = {row.uid for row in changed}
                    again = [self.rows[uid].id for uid in self._unclaimed if uid not in loaded]
                    changed += await load_rows(conn, account, again, self.mailbox_id)
                    self._apply(gone, changed)
            self.highest_modseq = max(self.highest_modseq, box.highest_modseq)

    def _own(self) -> None:
        if self._shared:
            self.rows = dict(self.rows)
            self.uids = list(self.uids)
            self._shared = False

    def _reset(self, rows: list[MessageRow]) -> None:
        self.rows, self.uids, self._shared = {}, [], False
        self.fresh, self.unseen, self._unclaimed = set(), [], set()
        self.deleted = self.deleted_size = self.size = 0
        self.keywords = Counter()
        for row in rows:  # in UID order: every list stays sorted by appending
            self.rows[row.uid] = row
            self.uids.append(row.uid)
            self._count(row, +1)

    def _apply(self, gone: Iterable[int], changed: Iterable[MessageRow]) -> None:
        self._own()
        gone = set(gone)
        for uid in sorted(gone, reverse=True):
            old = self.rows.pop(uid, None)
            if old is not None:
                del self.uids[bisect.bisect_left(self.uids, uid)]
                self._count(old, -1)
        for row in changed:
            if row.uid in gone:
                continue
            old = self.rows.get(row.uid)
            if old is None:
                if not self.uids or row.uid > self.uids[-1]:
                    self.uids.append(row.uid)
                else:
                    bisect.insort(self.uids, row.uid)
            elif old.modseq > row.modseq:
                continue  # read before a newer change that is applied already
            else:
                self._count(old, -1)
            self.rows[row.uid] = row
            self._count(row, +1)

    def _count(self, row: MessageRow, sign: int) -> None:
        uid, flags = row.uid, row.flags
        fresh = not row.claimed or RECENT_FLAG in flags
        if sign > 0:
            if fresh:
                self.fresh.add(uid)
            if not row.claimed:
                self._unclaimed.add(uid)
            if _SEEN not in flags:
                if not self.unseen or uid > self.unseen[-1]:
                    self.unseen.append(uid)
                else:
                    bisect.insort(self.unseen, uid)
        else:
            self.fresh.discard(uid)
            self._unclaimed.discard(uid)
            if _SEEN not in flags:
                index = bisect.bisect_left(self.unseen, uid)
                if index < len(self.unseen) and self.unseen[index] == uid:
                    del self.unseen[index]
        if _DELETED in flags:
            self.deleted += sign
            self.deleted_size += sign * row.size_rounded
        self.size += sign * row.size_rounded
        for flag in flags:
            if not flag.startswith("\\"):
                self.keywords[flag] += sign
                if self.keywords[flag] <= 0:
                    del self.keywords[flag]

    def note_claimed(self, uids: Iterable[int], flags: frozenset[str] = frozenset()) -> None:
        """This process gave these rows their first flags (`claim_messages`), which
        takes no new modseq: no other session is to see them as new again."""
        for uid in uids:
            row = self.rows.get(uid)
            if row is None or row.claimed:
                continue
            self._own()
            if flags - row.flags:
                self._count(row, -1)
                self.rows[uid] = row = row._replace(claimed=True, flags=row.flags | flags)
                self._count(row, +1)
                continue
            # Only the claim: the counts by flag stay (a first SELECT claims 50,000).
            self.rows[uid] = row._replace(claimed=True)
            self._unclaimed.discard(uid)
            if RECENT_FLAG not in row.flags:
                self.fresh.discard(uid)

    def replace_row(self, uid: int, blob_id: BlobId, sealed: bool) -> None:
        """A row's blob changed (`mailbox encrypt`), which takes no new modseq."""
        row = self.rows.get(uid)
        if row is not None and (row.blob_id, row.sealed) != (blob_id, sealed):
            self._own()
            self.rows[uid] = row._replace(blob_id=blob_id, sealed=sealed)


async def mailbox_counters(engine: AsyncEngine, mailbox_id: MailboxId) -> tuple[int, int]:
    """(highest modseq, UIDNEXT) of a mailbox as committed now: one statement built once,
    in a read transaction of its own (on SQLite one worker call, about a third of what
    an async connection's query costs). A selected session asks at every command.
    Raises MailboxNotFound when it was deleted."""
    params = {"mailbox_id": mailbox_id}
    found = await run_transaction(
        engine, lambda conn: conn.execute(_COUNTERS, params).first(), writes=False
    )
    if found is None:
        raise MailboxNotFound(f"mailbox id {mailbox_id} does not exist")
    return int(found.highest_modseq), int(found.uidnext)


# -- the listings of each unlocked account ---------------------------------------------------

_listings: dict[int, tuple[weakref.ref[UnlockedAccount], OrderedDict[MailboxId, MailboxListing]]]
_listings = {}


def _of(account: UnlockedAccount) -> OrderedDict[MailboxId, MailboxListing]:
    key = id(account)
    found = _listings.get(key)
    if found is not None and found[0]() is account:
        return found[1]

    def gone(ref: weakref.ref[UnlockedAccount]) -> None:
        held = _listings.get(key)
        if held is not None and held[0] is ref:
            del _listings[key]

    listings: OrderedDict[MailboxId, MailboxListing] = OrderedDict()
    _listings[key] = (weakref.ref(account, gone), listings)
    return listings


def cached_listing(account: UnlockedAccount, box: Mailbox) -> MailboxListing | None:
    """The listing `account` holds for `box` (same UIDVALIDITY), as it is: not synced."""
    found = _of(account).get(box.id)
    return found if found is not None and found.uidvalidity == box.uidvalidity else None


async def mailbox_listing(
    engine: AsyncEngine, account: UnlockedAccount, box: Mailbox
) -> MailboxListing:
    """The listing of `box` for `account`, brought up to `box` (just read by the caller):
    loaded whole the first time, then only what changed."""
    listings = _of(account)
    listing = listings.get(box.id)
    if listing is None or listing.uidvalidity != box.uidvalidity:
        # A mailbox id of a deleted folder may come back (SQLite reuses the largest
        # rowid); UIDVALIDITY only grows per user, so the pair names one mailbox.
        listing = listings[box.id] = MailboxListing(box.id, box.uidvalidity)
    listings.move_to_end(box.id)
    while len(listings) > LISTINGS_PER_ACCOUNT:
        listings.popitem(last=False)
    await listing.sync(engine, account, box)
    return listing


def drop_listings(account: UnlockedAccount) -> None:
    """Forget every listing of `account` now (its credential generation moved)."""
    found = _listings.get(id(account))
    if found is not None and found[0]() is account:
        del _listings[id(account)]


def listing_count() -> int:
    """Accounts that hold listings in this process (for tests and diagnostics)."""
    return len(_listings)

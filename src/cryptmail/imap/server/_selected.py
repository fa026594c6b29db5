"""The selected mailbox as one session sees it: UIDs, sequence numbers and flags in
memory, kept current by an incremental refresh.

A refresh reads the mailbox row (one query); only when its highest modseq moved does
it load the rows changed since (``load_messages(since_modseq=...)``) and the UIDs
expunged since (``vanished_since``). So NOOP, IDLE and a single FETCH cost the same in
a mailbox of ten messages as in one of a million. Changes are queued and written as
untagged FLAGS / EXPUNGE / EXISTS / RECENT / FETCH responses where RFC 3501 allows them.

SELECT starts from the mailbox's listing (`store.mailbox_listing`), which this process
keeps for the account between SELECTs and brings up to date with what changed only, and
borrows its rows instead of copying them: the first change this session makes to its
view (a flag it stores, mail it learns of, a message it claims) copies them first. So
SELECT does no work per message in the mailbox, only per message changed since.

Keywords: FLAGS and PERMANENTFLAGS name the system flags plus every keyword this session
has seen in the mailbox (RFC 3501 7.1, 7.2.6). A keyword that first appears (our STORE,
an APPEND or COPY here, another session's change) is announced with a new ``* FLAGS``
and ``* OK [PERMANENTFLAGS ...]`` before the FETCH or EXISTS that shows it, as Dovecot
does; the set only grows while the mailbox stays selected.

\\Recent: a message nobody has indexed yet, or one whose stored flags carry \\Recent,
is recent to the first session that selects it read-write; that session indexes it
(one EC unwrap, ever) without \\Recent, or removes the stored \\Recent. ``* n RECENT``
goes out whenever the count the client knows changes: after new mail, and after an
expunge that took recent messages (as Dovecot does).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Final, Protocol

from cryptmail.errors import CryptmailError
from cryptmail.imap.wire._response import Atom, ImapValue, response_code, untagged
from cryptmail.imap.wire._sequence import RangeSet, SequenceSet, format_number_runs
from cryptmail.keys import UnlockedAccount
from cryptmail.store import (
    RECENT_FLAG,
    BlobId,
    Mailbox,
    MailboxListing,
    MessageId,
    MessageRow,
    change_flags,
    claim_messages,
    load_messages,
    mailbox_counters,
    mailbox_listing,
    vanished_since,
)

if TYPE_CHECKING:
    from cryptmail.imap.message._sortorder import SortIndex
    from cryptmail.imap.server._fetch import Facts
    from cryptmail.imap.server._listener import ServerContext
    from cryptmail.imap.server._session import Session

SYSTEM_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_FACTS_KEPT: Final = 4096


class LiveUpdates(Protocol):
    """RFC 5267 live searches of this mailbox (commands/_context.py): told before
    expunges go out, and after the other updates."""

    async def expunging(
        self, session: Session, selected: SelectedMailbox, gone: Collection[int]
    ) -> None: ...

    async def changed(self, session: Session, selected: SelectedMailbox) -> None: ...


class InvalidSequence(CryptmailError):
    """A message sequence number beyond the mailbox."""


def flag_atoms(flags: Iterable[str]) -> list[ImapValue]:
    return [Atom(f) for f in sorted(flags, key=lambda f: (not f.startswith("\\"), f))]


class SelectedMailbox:
    """See the module docstring."""

    def __init__(
        self,
        context: ServerContext,
        account: UnlockedAccount,
        mailbox: Mailbox,
        *,
        read_only: bool,
    ) -> None:
        self.context = context
        self.account = account
        self._mailbox = mailbox
        self.mailbox_id = mailbox.id
        self.uidvalidity = mailbox.uidvalidity
        self.uidnext = mailbox.uidnext
        self.highest_modseq = mailbox.highest_modseq
        self.read_only = read_only
        self.uids: list[int] = []
        self.rows: dict[int, MessageRow] = {}
        self.recent: set[int] = set()
        self.facts: OrderedDict[MessageId, Facts] = OrderedDict()
        self.sort_keys: SortIndex | None = None  # shared; see _sortkeys
        self.condstore = False
        self.qresync = False
        self.rev2 = False  # IMAP4rev2 enabled (RFC 9051): no \\Recent, no RECENT
        self.keywords: set[str] = set()  # keywords in FLAGS; grows, never shrinks
        self._announced = 0  # EXISTS count the client knows
        self._announced_recent = 0  # RECENT count the client knows
        self._new_keywords = False  # keywords gained since the last FLAGS response
        self._expunged: set[int] = set()  # UIDs gone from the store, not yet reported
        self._flag_changes: set[int] = set()
        self._listing: MailboxListing | None = None
        self._borrowed = False  # rows and uids are the listing's: copy before a change
        self.first_unseen_uid: int | None = None  # as of the load
        self._just_loaded = False  # the refresh at the end of SELECT has nothing to read
        # RFC 5182: the last SEARCH RETURN (SAVE) result, by UID ("$"). It lives and dies
        # with this object, so SELECT, EXAMINE, CLOSE and UNSELECT reset it.
        self.saved: frozenset[int] = frozenset()
        # UIDs whose membership in a live search may have changed (new, flags, gone),
        # for RFC 5267 UPDATE contexts; see commands/_context.py.
        self.touched: set[int] = set()
        self.live: LiveUpdates | None = None

    @property
    def initial_flags(self) -> frozenset[str]:
        """Flags a never-indexed row gets when this session indexes it."""
        return frozenset() if not self.read_only else frozenset({RECENT_FLAG})

    # -- loading -------------------------------------------------------------------------

    async def load(self) -> None:
        listing = await mailbox_listing(self.context.engine, self.account, self._mailbox)
        # Nothing awaited from here to the borrow: the listing is as synced.
        self._listing = listing
        self.rows, self.uids = listing.borrow()
        self._borrowed = True
        self.highest_modseq = max(self.highest_modseq, listing.highest_modseq)
        if self.uids:
            self.uidnext = max(self.uidnext, self.uids[-1] + 1)
        self.first_unseen_uid = listing.first_unseen
        self.keywords = set(listing.keywords)
        await self._claim_recent([self.rows[uid] for uid in sorted(listing.fresh)])
        self._announced = len(self.uids)
        self._announced_recent = len(self.recent)
        self._new_keywords = False  # SELECT sends the first FLAGS response itself
        self._just_loaded = True

    def _own(self) -> None:
        """Copy the borrowed rows before the first change to this session's view."""
        if self._borrowed:
            self.rows = dict(self.rows)
            self.uids = list(self.uids)
            self._borrowed = False

    async def _claim_recent(self, rows: Iterable[MessageRow]) -> None:
        """Messages new to everyone become this session's \\Recent. A read-write session
        claims them (their first flags, in one statement for all) without reading them:
        a mailbox that received 50,000 messages since anyone looked opens in about a
        second, and FETCH indexes what it reads (in batches, see `prefetch_facts`)."""
        stored_recent: dict[MessageId, frozenset[str]] = {}
        unclaimed: list[MessageRow] = []
        for row in rows:
            if RECENT_FLAG in row.flags:
                self.recent.add(row.uid)
                clean = row.flags - {RECENT_FLAG}
                self._own()
                self.rows[row.uid] = _with_flags(row, clean)
                stored_recent[row.id] = clean
            elif not row.claimed:
                self.recent.add(row.uid)
                unclaimed.append(self.rows[row.uid])
        if unclaimed and not self.read_only:
            await claim_messages(self.context.engine, self.account, unclaimed)
            self._own()
            for row in unclaimed:
                self.rows[row.uid] = row._replace(claimed=True)
            if self._listing is not None:
                self._listing.note_claimed(row.uid for row in unclaimed)
        if stored_recent and not self.read_only:
            # Only \Recent is taken off the stored flags: another session may have
            # changed the others since these rows were loaded.
            done = await change_flags(
                self.context.engine,
                self.account,
                self.mailbox_id,
                list(stored_recent),
                "remove",
                frozenset({RECENT_FLAG}),
            )
            if done.changed:
                self.note_own_modseq(done.modseq)

    def note_own_modseq(self, modseq: int) -> None:
        """Our own change bumped the modseq by one: skip re-reading it at refresh."""
        if modseq == self.highest_modseq + 1:
            self.highest_modseq = modseq

    def close(self) -> None:
        self.facts.clear()
        self.sort_keys = None  # shared with other sessions: let go, do not clear
        self._listing = None

    def replace_blob(self, uid: int, blob_id: BlobId, sealed: bool) -> None:
        """The row's blob changed under it (`mailbox encrypt`); the listing learns too."""
        row = self.rows.get(uid)
        if row is not None:
            self._own()
            self.rows[uid] = row._replace(blob_id=blob_id, sealed=sealed)
        if self._listing is not None:
            self._listing.replace_row(uid, blob_id, sealed)

    # -- numbers ---------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def sequence_of(self, uid: int) -> int:
        return bisect.bisect_left(self.uids, uid) + 1

    def resolve(self, sequence: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs the set names, ascending.

        Raises InvalidSequence for a sequence number beyond the mailbox.
        """
        if sequence.saved:  # "$" means the same messages in UID and sequence commands
            return [(self.sequence_of(u), u) for u in sorted(self.saved) if u in self.rows]
        if uid:
            largest = self.uids[-1] if self.uids else 0
            ranges = sequence.resolve(largest)
            found = list(ranges.select(self.uids))
            first = self.sequence_of(found[0]) if found else 0
            if found and self.uids[first + len(found) - 2] != found[-1]:
                # A set with gaps ("1,5,9"): each UID's own position.
                return [(self.sequence_of(u), u) for u in found]
            return [(first + i, u) for i, u in enumerate(found)]
        count = len(self.uids)
        ranges = sequence.resolve(count)
        if ranges and ranges.ends[-1] > count:
            if not sequence.uses_star:
                raise InvalidSequence("message sequence number beyond the mailbox")
            ranges = ranges.clip(1, count)  # "1:*" in an empty mailbox names nothing
        return [(seq, self.uids[seq - 1]) for seq in ranges]

    def uid_set(self, sequence: SequenceSet) -> RangeSet:
        """The UIDs a UID set names, ``$`` (the saved search result) included."""
        if sequence.saved:
            return RangeSet.from_numbers(self.saved)
        return sequence.resolve(self.uids[-1] if self.uids else 0)

    def flags_of(self, uid: int) -> list[ImapValue]:
        flags = set(self.rows[uid].flags)
        if uid in self.recent and not self.rev2:
            flags.add(RECENT_FLAG)
        return flag_atoms(flags)

    def _note_keywords(self, flags: Iterable[str]) -> None:
        new = {f for f in flags if not f.startswith("\\")} - self.keywords
        if new:
            self.keywords |= new
            self._new_keywords = True

    def flags_responses(self) -> bytes:
        """``* FLAGS`` then ``* OK [PERMANENTFLAGS ...]``: system flags plus keywords.

        A read-only session may change nothing, so its PERMANENTFLAGS list is empty.
        """
        names = flag_atoms(set(SYSTEM_FLAGS) | self.keywords)
        out = untagged(Atom("FLAGS"), names)
        if self.read_only:
            return out + b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
        code = response_code("PERMANENTFLAGS", [*names, Atom("\\*")])
        return out + b"* OK " + code.encode() + b" Flags permitted.\r\n"

    async def announce_keywords(self, session: Session) -> None:
        """Send FLAGS and PERMANENTFLAGS again if a keyword appeared since the last."""
        if self._new_keywords:
            self._new_keywords = False
            await session.send(self.flags_responses())

    # -- local changes -------------------------------------------------------------------

    def update_flags(self, uid: int, flags: frozenset[str], modseq: int) -> None:
        row = self.rows.get(uid)
        if row is not None:
            self._own()
            self.rows[uid] = _with_flags(row, flags, modseq)
            self._note_keywords(flags)
            self.touched.add(uid)

    def add_row(self, row: MessageRow) -> None:
        if row.uid in self.rows:
            return
        self._own()
        self.rows[row.uid] = row
        bisect.insort(self.uids, row.uid)
        self._note_keywords(row.flags)
        self.touched.add(row.uid)

    def remove_uids(self, uids: Iterable[int]) -> list[int]:
        """Drop UIDs; returns the sequence numbers to report, each valid when sent."""
        sequences: list[int] = []
        self._own()
        gone = set(uids)
        if self.saved & gone:
            self.saved = self.saved - gone  # RFC 5182: expunged messages leave "$"
        self.touched |= gone
        for uid in sorted(set(uids), reverse=True):
            index = bisect.bisect_left(self.uids, uid)
            if index < len(self.uids) and self.uids[index] == uid:
                del self.uids[index]
                row = self.rows.pop(uid)
                self.facts.pop(row.id, None)
                if self.sort_keys is not None:
                    self.sort_keys.pop(uid, None)
                self.recent.discard(uid)
                self._flag_changes.discard(uid)
                self._expunged.discard(uid)
                # The client's count drops by one per EXPUNGE, so new mail added since
                # the last EXISTS still needs one; a message it never heard of (above
                # the announced count) has no sequence number to report.
                if index < self._announced:
                    sequences.append(index + 1)
                    self._announced -= 1
        return sequences

    # -- refresh -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Learn what other sessions and processes changed (one query if nothing did)."""
        if self._just_loaded:
            # Straight after the load, which read the mailbox row: what lands meanwhile
            # is read at the next command's refresh.
            self._just_loaded = False
            return
        # Every command in the selected state pays this look (`mailbox_counters`: a third
        # of an async connection's cost). What it finds changed is read after it, maybe
        # newer: that is read again next time, and applying it twice changes nothing.
        highest_modseq, uidnext = await mailbox_counters(self.context.engine, self.mailbox_id)
        if highest_modseq == self.highest_modseq:
            return
        since = self.highest_modseq
        async with self.context.engine.connect() as conn:
            gone = await vanished_since(conn, self.mailbox_id, since)
            changed = await load_messages(conn, self.account, self.mailbox_id, since_modseq=since)
        self._own()
        self.highest_modseq = max(self.highest_modseq, highest_modseq)
        self.uidnext = max(self.uidnext, uidnext)
        self._expunged.update(uid for uid in gone if uid in self.rows)
        fresh: list[MessageRow] = []
        for row in changed:
            known = self.rows.get(row.uid)
            if known is None:
                if row.uid not in gone:
                    self.add_row(row)
                    fresh.append(row)
                continue
            if known.flags != row.flags - {RECENT_FLAG} or known.modseq != row.modseq:
                self.rows[row.uid] = _with_flags(row, row.flags - {RECENT_FLAG})
                if known.flags != row.flags - {RECENT_FLAG}:
                    self._flag_changes.add(row.uid)
                    self.touched.add(row.uid)
                    self._note_keywords(row.flags)
        if fresh:
            await self._claim_recent(fresh)

    async def send_updates(self, session: Session, *, allow_expunge: bool = True) -> None:
        """Refresh, then write the untagged responses the client has not seen."""
        await self.refresh()
        await self.announce_keywords(session)
        if allow_expunge and self._expunged:
            gone = sorted(self._expunged)
            if self.live is not None:
                await self.live.expunging(session, self, gone)
            sequences = self.remove_uids(gone)
            if self.qresync:
                await session.send(b"* VANISHED " + format_number_runs(gone).encode() + b"\r\n")
            else:
                for seq in sequences:
                    await session.send(untagged(seq, Atom("EXPUNGE")))
        if len(self.uids) != self._announced:
            self._announced = len(self.uids)
            await session.send(untagged(len(self.uids), Atom("EXISTS")))
        await self.announce_recent(session)
        if self._flag_changes:
            for uid in sorted(self._flag_changes):
                if uid in self._expunged or uid not in self.rows:
                    continue
                await session.send(self.flags_response(uid))
            self._flag_changes.clear()
        if self.live is not None:
            await self.live.changed(session, self)
        else:
            self.touched.clear()

    async def announce_recent(self, session: Session) -> None:
        """``* n RECENT`` if the count changed since the client last heard it: after new
        mail, and after expunges that took recent messages (Dovecot does the same)."""
        if len(self.recent) != self._announced_recent and not self.rev2:
            self._announced_recent = len(self.recent)
            await session.send(untagged(len(self.recent), Atom("RECENT")))

    def flags_response(self, uid: int, *, with_uid: bool = True) -> bytes:
        parts: list[ImapValue] = []
        if with_uid:
            parts += [Atom("UID"), uid]
        parts += [Atom("FLAGS"), self.flags_of(uid)]
        if self.condstore:
            parts += [Atom("MODSEQ"), [self.rows[uid].modseq]]
        return untagged(self.sequence_of(uid), Atom("FETCH"), parts)

    def is_expunged(self, uid: int) -> bool:
        return uid in self._expunged

    @property
    def expunge_pending(self) -> bool:
        """Whether any message in view is gone from the store, not yet reported."""
        return bool(self._expunged)


def _with_flags(row: MessageRow, flags: frozenset[str], modseq: int | None = None) -> MessageRow:
    return row._replace(flags=flags, modseq=row.modseq if modseq is None else modseq)

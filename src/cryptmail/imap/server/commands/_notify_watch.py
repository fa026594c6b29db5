"""What one NOTIFY session (RFC 5465) watches, and the notifications it sends.

The session's :class:`ChangeSink` hears the same change feed as IDLE (the ChangeBus:
deliveries, other sessions, other processes through serve's change feed) as mailbox
ids, coalesced into a set, so a thousand deliveries to INBOX cost one STATUS. Names are
sealed at rest: a changed mailbox's name is opened in this session (one row) and
matched against the filters here, never in SQL.

Memory stays bounded with thousands of mailboxes: message events keep no per-mailbox
state beyond an LRU of counters (`imap.notify_max_mailboxes` entries); only
MailboxName, SubscriptionChange and the SUBSCRIBED filter keep the user's names (and
NOTIFY SET refuses them with ``NO [NOTIFICATIONOVERFLOW]`` past that limit). A session
that falls behind by more than `imap.notify_max_pending` changes gets
``* OK [NOTIFICATIONOVERFLOW]`` and its notifications end (RFC 5465 5.8).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.errors import MailboxNotFound, StoreError
from cryptmail.imap.server.commands._mailboxes import listed_names, utf8_names, wire_name
from cryptmail.imap.wire._parser_notify import Notify, NotifyGroup
from cryptmail.imap.wire._requests import FetchItem
from cryptmail.store import (
    DELIMITER,
    Mailbox,
    MailboxId,
    list_mailboxes,
    list_subscriptions,
    mailbox_by_id,
    mailbox_state,
    normal_name,
)

if TYPE_CHECKING:
    from cryptmail.imap.server._selected import SelectedMailbox
    from cryptmail.imap.server._session import Session

SUPPORTED_EVENTS: Final = (
    "MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange",
)  # fmt: skip
MESSAGE_CHANGES: Final = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
NAME_CHANGES: Final = frozenset({"MailboxName", "SubscriptionChange"})
_RESCAN: Final = MailboxId(0)

FetchNew = Callable[
    ["Session", "SelectedMailbox", list[int], tuple[FetchItem, ...]], Awaitable[None]
]
"""Sends MessageNew's FETCH responses for new UIDs of the selected mailbox."""


class ChangeSink(asyncio.Queue[MailboxId]):
    """A ChangeBus subscriber that keeps a set of changed mailbox ids, not a queue: it
    never fills, and counts what arrived since the session last looked."""

    def __init__(self, max_pending: int) -> None:
        super().__init__()
        self.pending: set[MailboxId] = set()
        self.count = 0
        self.max_pending = max_pending
        self.overflowed = False
        self.ready = asyncio.Event()

    def put_nowait(self, item: MailboxId) -> None:
        if self.overflowed:
            return
        self.count += 1
        if self.count > self.max_pending:
            self.overflowed = True  # fallen behind: stop collecting (bounded memory)
            self.pending.clear()
        else:
            self.pending.add(item)
        self.ready.set()

    def take(self) -> set[MailboxId]:
        taken, self.pending, self.count = self.pending, set(), 0
        self.ready.clear()
        return taken


def _matches(group: NotifyGroup, name: str, subscribed: set[str] | None) -> bool:
    kind = group.filter
    if kind in ("PERSONAL", "INBOXES"):
        # RFC 5465 6.3: Sieve may file into any folder, so the server cannot tell which
        # mailboxes receive mail; "inboxes" is then the same as "personal".
        return True
    if kind == "SUBSCRIBED":
        return subscribed is not None and name in subscribed
    if kind == "MAILBOXES":
        return name in group.mailboxes
    if kind == "SUBTREE":
        return any(name == root or name.startswith(root + DELIMITER) for root in group.mailboxes)
    return False


class NotifyWatch:
    """One NOTIFY SET in force; see the module docstring. `start` before use, `stop`
    when replaced or the session ends."""

    def __init__(self, session: Session, command: Notify, fetch_new: FetchNew) -> None:
        assert command.groups is not None  # noqa: S101 - NOTIFY NONE makes no watch
        self.account = session.user_account
        self.context = session.context
        self._fetch_new = fetch_new
        limits = session.config.imap
        self.max_mailboxes = limits.notify_max_mailboxes
        self.sink = ChangeSink(limits.notify_max_pending)
        selected = [g for g in command.groups if g.filter.startswith("SELECTED")]
        self.selected_events = frozenset(selected[0].events) if selected else frozenset()
        self.delayed = bool(selected) and selected[0].filter == "SELECTED-DELAYED"
        self.selected_fetch = selected[0].fetch if selected else ()
        # Names are matched as stored: in NFC (a denormalised name names the same folder).
        self.groups = [
            replace(g, mailboxes=tuple(normal_name(m) for m in g.mailboxes))
            for g in command.groups
            if not g.filter.startswith("SELECTED")
        ]
        self.wants_names = any(NAME_CHANGES & set(g.events) for g in self.groups)
        self.needs_subscriptions = self.wants_names or any(
            g.filter == "SUBSCRIBED" for g in self.groups
        )
        self.names: dict[MailboxId, str] | None = None
        self.subscribed: set[str] | None = None
        self._counters: OrderedDict[MailboxId, tuple[int, int, int]] = OrderedDict()
        self._subscribed_to_bus = False

    # -- lifetime --------------------------------------------------------------------------

    def too_many_names(self) -> bool:
        return sum(len(g.mailboxes) for g in self.groups) > self.max_mailboxes

    async def load_names(self) -> bool:
        """Read the names and subscriptions this watch keeps; False if over the limit."""
        if not self.needs_subscriptions:
            return True
        async with self.context.engine.begin() as conn:
            boxes = await list_mailboxes(conn, self.account.user.id, self.account)
            subscribed = await list_subscriptions(conn, self.account)
        if len(boxes) > self.max_mailboxes or len(subscribed) > self.max_mailboxes:
            return False
        self.names = listed_names(boxes)
        self.subscribed = subscribed
        return True

    def start(self) -> None:
        self.context.bus.subscribe(self.account.user.id, self.sink)
        self._subscribed_to_bus = True

    def stop(self) -> None:
        if self._subscribed_to_bus:
            self.context.bus.unsubscribe(self.account.user.id, self.sink)
            self._subscribed_to_bus = False

    # -- matching --------------------------------------------------------------------------

    def events_for(self, name: str, subscribed: set[str] | None = None) -> set[str]:
        """Events the client asked for on the mailbox `name` (not the selected one)."""
        subs = self.subscribed if subscribed is None else subscribed
        found: set[str] = set()
        for group in self.groups:
            if _matches(group, name, subs):
                found.update(group.events)
        return found

    async def _listed_name(self, conn: AsyncConnection, box: Mailbox) -> str:
        """`box`'s name as LIST shows it. Only a name stored before names were
        normalised costs the list (to see whether its NFC form is another folder's)."""
        if normal_name(box.name) == box.name:
            return box.name
        boxes = await list_mailboxes(conn, self.account.user.id, self.account)
        return listed_names(boxes).get(MailboxId(box.id), normal_name(box.name))

    def status_items(self, session: Session, events: Iterable[str]) -> list[str]:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if "CONDSTORE" in session.enabled or "FlagChange" in events:
            items.append("HIGHESTMODSEQ")
        return items

    # -- sending ---------------------------------------------------------------------------

    async def deliver(self, session: Session) -> None:
        """Send what changed since the last call (or the overflow notice)."""
        if self.sink.overflowed:
            self.stop()
            session.notify = None
            await session.send(
                b"* OK [NOTIFICATIONOVERFLOW] Too many changes at once; notifications are off.\r\n"
            )
            return
        changed = self.sink.take()
        selected = session.selected
        if selected is not None and (selected.mailbox_id in changed or _RESCAN in changed):
            if self.selected_events:
                await self._push_selected(session, selected)
            changed.discard(selected.mailbox_id)
        if _RESCAN in changed and self.needs_subscriptions:
            await self._names_changed(session)
        for mailbox_id in sorted(changed - {_RESCAN}):
            await self._push_status(session, mailbox_id)

    async def _push_selected(self, session: Session, selected: SelectedMailbox) -> None:
        before = selected.uids[-1] if selected.uids else 0
        await selected.send_updates(session, allow_expunge=not self.delayed)
        new = [uid for uid in selected.uids if uid > before]
        if new and self.selected_fetch and "MessageNew" in self.selected_events:
            await self._fetch_new(session, selected, new, self.selected_fetch)

    async def _push_status(self, session: Session, mailbox_id: MailboxId) -> None:
        async with self.context.engine.connect() as conn:
            try:
                box = await mailbox_by_id(conn, self.account, mailbox_id)
            except MailboxNotFound:
                self._counters.pop(mailbox_id, None)
                return
            name = await self._listed_name(conn, box)
            events = self.events_for(name) & MESSAGE_CHANGES
            if not events:
                return
            state = await mailbox_state(conn, box.id)
        if state is None:  # deleted meanwhile
            self._counters.pop(mailbox_id, None)
            return
        now = (state.messages, state.uidnext, state.highest_modseq)
        before = self._counters.pop(mailbox_id, None)
        self._counters[mailbox_id] = now
        while len(self._counters) > self.max_mailboxes:
            self._counters.popitem(last=False)
        if before is not None:
            moved = before[:2] != now[:2] and "MessageNew" in events
            flagged = before[2] != now[2] and "FlagChange" in events
            if not (moved or flagged):
                return
        await session.send(self.status_line(session, name, now, box.uidvalidity, events))

    def status_line(
        self,
        session: Session,
        name: str,
        counters: tuple[int, int, int],
        uidvalidity: int,
        events: Iterable[str],
    ) -> bytes:
        values = {
            "MESSAGES": counters[0],
            "UIDNEXT": counters[1],
            "UIDVALIDITY": uidvalidity,
            "HIGHESTMODSEQ": counters[2],
        }
        items = " ".join(f"{i} {values[i]}" for i in self.status_items(session, events))
        return (
            b"* STATUS " + wire_name(name, utf8_names(session)) + b" (" + items.encode() + b")\r\n"
        )

    def remember(self, mailbox_id: MailboxId, counters: tuple[int, int, int]) -> None:
        self._counters.pop(mailbox_id, None)  # most recently used last
        self._counters[mailbox_id] = counters
        while len(self._counters) > self.max_mailboxes:
            self._counters.popitem(last=False)

    async def _names_changed(self, session: Session) -> None:
        """LIST responses for mailboxes created, renamed, deleted, (un)subscribed."""
        old_names, old_subscribed = self.names or {}, self.subscribed or set()
        if not await self.load_names():
            self.sink.overflowed = True  # grew past the limit: end as an overflow
            await self.deliver(session)
            return
        names, subscribed = self.names or {}, self.subscribed or set()
        utf8 = utf8_names(session)
        parents = {n.rsplit(DELIMITER, 1)[0] for n in names.values() if DELIMITER in n}

        def attributes(name: str, *extra: str) -> bytes:
            words = ["\\HasChildren" if name in parents else "\\HasNoChildren", *extra]
            if name in subscribed:
                words.append("\\Subscribed")
            return b"(" + " ".join(words).encode() + b")"

        lines: list[bytes] = []
        for mailbox_id, name in names.items():
            old = old_names.get(mailbox_id)
            wanted = self.events_for(name, subscribed)
            if old is None and "MailboxName" in wanted:
                lines.append(b"* LIST " + attributes(name) + b' "/" ' + wire_name(name, utf8))
            elif old is not None and old != name:
                if "MailboxName" in wanted | self.events_for(old, old_subscribed):
                    lines.append(
                        b"* LIST " + attributes(name) + b' "/" ' + wire_name(name, utf8)
                        + b' ("OLDNAME" (' + wire_name(old, utf8) + b"))"
                    )  # fmt: skip
        for mailbox_id, old in old_names.items():
            if mailbox_id not in names and "MailboxName" in self.events_for(old, old_subscribed):
                lines.append(b'* LIST (\\NonExistent) "/" ' + wire_name(old, utf8))
        for name in sorted(subscribed ^ old_subscribed):
            wanted = self.events_for(name, subscribed) | self.events_for(name, old_subscribed)
            if "SubscriptionChange" in wanted:
                extra = () if name in names.values() else ("\\NonExistent",)
                if name in subscribed:
                    extra = (*extra, "\\Subscribed")
                lines.append(
                    b"* LIST (" + " ".join(extra).encode() + b') "/" ' + wire_name(name, utf8)
                )
        for line in lines:
            await session.send(line + b"\r\n")

    async def own_messages(
        self, session: Session, mailbox_id: MailboxId, added: int, last_uid: int
    ) -> None:
        """This session's APPEND, COPY or MOVE added `added` messages (the last with UID
        `last_uid`) to a mailbox that is not the selected one: its tagged answer (APPENDUID,
        COPYUID) told the client already, so the STATUS its own change would cause is not
        sent (RFC 5465 5: the server SHOULD omit an event the client caused).

        The mailbox's counters are read now and remembered, so the change's own wake-up
        finds nothing new. Anything another session added meanwhile is not swallowed: if
        the counters are not those our change alone explains, the STATUS goes out now.
        """
        selected = session.selected
        if selected is not None and selected.mailbox_id == mailbox_id:
            return  # the selected mailbox answers with EXISTS, as for any change
        try:
            async with self.context.engine.connect() as conn:
                box = await mailbox_by_id(conn, self.account, mailbox_id)
                name = await self._listed_name(conn, box)
                events = self.events_for(name) & MESSAGE_CHANGES
                if not events:
                    return
                state = await mailbox_state(conn, box.id)
        except StoreError:
            # The command is done and stored: never turn its OK into a failure. The
            # change's wake-up then sends the STATUS, as for anyone else's change.
            return
        if state is None:  # deleted meanwhile
            return
        now = (state.messages, state.uidnext, state.highest_modseq)
        before = self._counters.get(mailbox_id)
        self.remember(mailbox_id, now)
        if before is None:
            alone = state.uidnext == last_uid + 1  # nobody appended after us
        else:
            alone = now[:2] == (before[0] + added, last_uid + 1)
        if not alone and "MessageNew" in events:
            await session.send(self.status_line(session, name, now, box.uidvalidity, events))

    async def own_change(self) -> None:
        """This session changed the mailbox list itself: take the new names silently
        (RFC 5465 5: the client is not told of its own changes), then tell the others."""
        if self.needs_subscriptions:
            await self.load_names()

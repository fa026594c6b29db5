"""The change log: how every node hears at once of changes another process made.

A change (new mail, flags, an expunge, a mailbox created, renamed or deleted, a
credential change) writes one cm_changes row in the transaction that makes it: the
change's log entry commits with it or not at all. On PostgreSQL the same statement
sends `NOTIFY cryptmail_changes` with the row's ids as payload (delivered at commit,
to every listening node: `_listen`); every database can also be read with a cursor
(`read_changes`), which is how MariaDB/MySQL and SQLite nodes poll, and how a
PostgreSQL node catches up after its listening connection was lost.

Ids come from a sequence (AUTO_INCREMENT) and are handed out at insert, not at commit,
so a reader can see id 7 before id 6 commits. `ChangeCursor` therefore remembers the
ids it has not seen below the highest it has (the gaps) for `GAP_S` seconds, far
longer than any transaction that writes a change, and asks for them again.

Nothing in a row is readable beyond ids and a kind: no names, no addresses.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, SmallInteger, TextClause, bindparam, func, or_, select, text
from sqlalchemy.sql.dml import Insert

from cryptmail.db import _tables as t
from cryptmail.db._ids import UserId

CHANNEL: Final = "cryptmail_changes"
"""PostgreSQL's notification channel of the change log."""

GAP_S: Final = 60.0
"""Seconds a missing id below the highest seen is asked for again (see the module
docstring); an id still missing then belonged to a transaction that rolled back."""

MAX_GAPS: Final = 10_000
"""Most missing ids remembered; a bigger jump (a sequence restarted) keeps the newest."""

BATCH: Final = 1000
"""Most rows one read returns; the reader reads again at once when it got that many."""


class ChangeKind(enum.IntEnum):
    NEW = 1
    """Messages added to the mailbox (delivery, APPEND, COPY, MOVE, import)."""
    FLAGS = 2
    """Flags or keywords of messages in the mailbox changed."""
    EXPUNGE = 3
    """Messages left the mailbox."""
    MAILBOXES = 4
    """The user's mailbox list changed (created, renamed, deleted, (un)subscribed)."""
    CREDENTIALS = 5
    """The credential generation moved: sessions and cached logins of the user end."""


@dataclass(frozen=True)
class Change:
    id: int
    user_id: UserId
    mailbox_id: int
    """0 for a change of the user (CREDENTIALS, MAILBOXES)."""
    kind: ChangeKind


_log = t.cm_changes
_mb = t.cm_mailboxes

_INSERT_USER: Final[Insert] = _log.insert().values(
    user_id=bindparam("user_id"), mailbox_id=bindparam("mailbox_id"), kind=bindparam("kind")
)
_INSERT_MAILBOX: Final[Insert] = _log.insert().from_select(
    ["user_id", "mailbox_id", "kind"],
    select(_mb.c.user_id, _mb.c.id, bindparam("kind", type_=SmallInteger)).where(
        _mb.c.id == bindparam("mailbox_id")
    ),
)
# PostgreSQL: insert and notify in one round trip; the payload is "id user mailbox kind".
_PG_INSERT_USER: Final[TextClause] = text(
    "WITH c AS (INSERT INTO cm_changes (user_id, mailbox_id, kind) "
    "VALUES (:user_id, :mailbox_id, :kind) RETURNING id, user_id, mailbox_id, kind) "
    "SELECT pg_notify(:channel, concat_ws(' ', c.id, c.user_id, c.mailbox_id, c.kind)) FROM c"
)
_PG_INSERT_MAILBOX: Final[TextClause] = text(
    "WITH c AS (INSERT INTO cm_changes (user_id, mailbox_id, kind) "
    "SELECT user_id, id, :kind FROM cm_mailboxes WHERE id = :mailbox_id "
    "RETURNING id, user_id, mailbox_id, kind) "
    "SELECT pg_notify(:channel, concat_ws(' ', c.id, c.user_id, c.mailbox_id, c.kind)) FROM c"
)


def record_user_change(
    conn: Connection, user_id: int, kind: ChangeKind, mailbox_id: int = 0
) -> None:
    """Log a change of `user_id` (and NOTIFY on PostgreSQL), in `conn`'s transaction."""
    params = {"user_id": user_id, "mailbox_id": mailbox_id, "kind": int(kind)}
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_INSERT_USER, {**params, "channel": CHANNEL})
    else:
        conn.execute(_INSERT_USER, params)


def record_mailbox_change(conn: Connection, mailbox_id: int, kind: ChangeKind) -> None:
    """Log a change of the messages in `mailbox_id` (its owner is read in the same
    statement), in `conn`'s transaction."""
    params = {"mailbox_id": mailbox_id, "kind": int(kind)}
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_INSERT_MAILBOX, {**params, "channel": CHANNEL})
    else:
        conn.execute(_INSERT_MAILBOX, params)


def parse_payload(payload: str) -> Change | None:
    """The change a NOTIFY payload names; None for a payload that is not one of ours."""
    try:
        change_id, user_id, mailbox_id, kind = (int(part) for part in payload.split(" "))
        return Change(change_id, UserId(user_id), mailbox_id, ChangeKind(kind))
    except ValueError:
        return None


@dataclass
class ChangeCursor:
    """The ids a reader has seen: every id up to `high`, except `gaps`."""

    high: int
    clock: Callable[[], float] = time.monotonic
    gaps: dict[int, float] = field(default_factory=dict)
    """Missing ids below `high`, with the time they were first missed."""

    def accept(self, change_id: int) -> bool:
        """Note `change_id` as seen; whether it was new (False: a duplicate)."""
        if change_id > self.high:
            now = self.clock()
            for missing in range(max(self.high + 1, change_id - MAX_GAPS), change_id):
                self.gaps[missing] = now
            self.high = change_id
            if len(self.gaps) > MAX_GAPS:
                for old in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                    del self.gaps[old]
            return True
        return self.gaps.pop(change_id, None) is not None

    def expire(self) -> None:
        """Forget the gaps older than GAP_S: their transactions rolled back."""
        cutoff = self.clock() - GAP_S
        for missing in [i for i, since in self.gaps.items() if since < cutoff]:
            del self.gaps[missing]


def read_changes(conn: Connection, cursor: ChangeCursor) -> list[Change]:
    """The changes after `cursor.high` and in its gaps (at most BATCH), oldest first,
    each accepted into `cursor`. One indexed query (the primary key)."""
    cursor.expire()
    condition = _log.c.id > cursor.high
    gaps = sorted(cursor.gaps)[-500:]  # bound parameters per query
    if gaps:
        condition = or_(condition, _log.c.id.in_(gaps))
    rows = conn.execute(
        select(_log.c.id, _log.c.user_id, _log.c.mailbox_id, _log.c.kind)
        .where(condition)
        .order_by(_log.c.id)
        .limit(BATCH)
    ).all()
    found = []
    for row in rows:
        if cursor.accept(int(row.id)):
            found.append(
                Change(int(row.id), UserId(int(row.user_id)), int(row.mailbox_id), _kind(row.kind))
            )
    return found


def _kind(value: int) -> ChangeKind:
    try:
        return ChangeKind(int(value))
    except ValueError:  # a newer version's kind: treat it as the broadest we know
        return ChangeKind.MAILBOXES


def newest_change(conn: Connection) -> int:
    """The highest id in the log (0 when empty): where a new reader starts."""
    return int(conn.execute(select(func.coalesce(func.max(_log.c.id), 0))).scalar_one())


def oldest_change(conn: Connection) -> int | None:
    """The lowest id still in the log (None when empty)."""
    value = conn.execute(select(func.min(_log.c.id))).scalar_one()
    return None if value is None else int(value)


PRUNE_STEP: Final = 10_000
"""Most ids one pruning transaction deletes, so none holds many row locks for long."""


def prune_changes(conn: Connection, *, below: int, keep_rows: int) -> int:
    """Delete up to PRUNE_STEP of the oldest rows among those with ids below `below`
    or older than the newest `keep_rows`; how many. Call it again (in a new
    transaction) while it deletes any."""
    oldest = oldest_change(conn)
    if oldest is None:
        return 0
    floor = min(max(below, newest_change(conn) - keep_rows + 1), oldest + PRUNE_STEP)
    if floor <= oldest:
        return 0
    return int(conn.execute(_log.delete().where(_log.c.id < floor)).rowcount or 0)

"""The change feed: one per node, it carries the change log (db/_changes.py) into the
node's ChangeBus (IDLE wakes) and CredentialWatcher (sessions end), whoever made the
change: another node, the CLI, an LMTP worker.

On PostgreSQL (`events.mode` notify, the `auto` choice there) it LISTENs on one
connection of its own and hands each NOTIFY on at once. Whenever that connection is
(re)opened, and every `events.check_interval_s` while it is open, it also reads the log
after the last id it saw, so a change whose NOTIFY it missed (the connection was lost,
`pg_terminate_backend`, a restart of the database) is delivered late but never lost.
Elsewhere (`poll`, the `auto` choice on MariaDB/MySQL and SQLite) it reads the log
every `events.poll_interval_ms`: one query per node, whatever the number of sessions.

A node cut off for longer than the log keeps rows (`events.keep_s`, `keep_rows`)
cannot replay what it missed: it then wakes every IDLE session and checks every
login once (`on_history_lost`).

`prune_forever` keeps the log bounded (and clears the shared throttle's refilled
buckets): every minute it deletes rows older than `keep_s` (by id: the newest id seen
`keep_s` ago) and beyond the newest `keep_rows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Final, Literal

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import EventsConfig
from cryptmail.db import (
    Change,
    ChangeCursor,
    ChangeKind,
    ChangeListener,
    newest_change,
    oldest_change,
    parse_payload,
    prune_changes,
    read_changes,
    run_transaction,
)
from cryptmail.errors import CryptmailError
from cryptmail.keys import CredentialWatcher, LoginThrottle
from cryptmail.store import ChangeBus, MailboxId

log = logging.getLogger(__name__)

Mode = Literal["notify", "poll", "off"]

PRUNE_EVERY_S: Final = 60.0
PING_TIMEOUT_S: Final = 5.0


def feed_mode(events: EventsConfig, dialect: str) -> Mode:
    """The mode `events.mode` means on a database of `dialect`."""
    if events.mode == "auto":
        return "notify" if dialect == "postgresql" else "poll"
    if events.mode == "notify" and dialect != "postgresql":
        return "poll"  # only PostgreSQL has NOTIFY; the log works everywhere
    return events.mode


def dispatch_to(bus: ChangeBus, watcher: CredentialWatcher | None) -> Callable[[Change], None]:
    """What a change does on this node: CREDENTIALS ends sessions, the rest wakes IDLE."""

    def dispatch(change: Change) -> None:
        if change.kind is ChangeKind.CREDENTIALS:
            if watcher is not None:
                watcher.notice(change.user_id)
        else:
            bus.publish(change.user_id, MailboxId(change.mailbox_id))

    return dispatch


class ChangeFeed:
    """See the module docstring. `run` until `shutdown` is set."""

    def __init__(
        self,
        engine: AsyncEngine,
        events: EventsConfig,
        on_change: Callable[[Change], None],
        on_history_lost: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._events = events
        self._on_change = on_change
        self._on_history_lost = on_history_lost
        self.mode: Mode = feed_mode(events, engine.dialect.name)
        self._cursor: ChangeCursor | None = None
        self.delivered = 0
        """Changes handed on so far (for tests and the operator)."""
        self.caught_up = 0
        """Of those, the ones found by reading the log rather than by a NOTIFY."""
        self.reconnects = 0
        """LISTEN connections opened again after one was lost."""
        self.listener_pid: int | None = None
        """The PostgreSQL backend of the LISTEN connection now (pg_stat_activity.pid)."""
        self.started = asyncio.Event()
        """Set once the feed knows where the log stands: changes from then on reach it."""

    async def run(self, shutdown: asyncio.Event) -> None:
        if self.mode == "off":
            return
        self._cursor = await self._start_cursor(shutdown)
        if self._cursor is None:
            return  # stopped before the database ever answered
        log.info("change feed: %s, from change %d", self.mode, self._cursor.high)
        self.started.set()
        if self.mode == "notify":
            await self._listen_forever(shutdown)
        else:
            await self._poll_forever(shutdown)

    async def _start_cursor(self, shutdown: asyncio.Event) -> ChangeCursor | None:
        # Changes before this node started concern no session of it.
        while not shutdown.is_set():
            try:
                high = await run_transaction(self._engine, newest_change, writes=False)
                return ChangeCursor(high)
            except (CryptmailError, OSError) as exc:
                log.warning("change feed: cannot read the change log (%s); retrying", exc)
                await _sleep_unless(shutdown, self._events.reconnect_ms / 1000)
        return None

    # -- polling ----------------------------------------------------------------------

    async def _poll_forever(self, shutdown: asyncio.Event) -> None:
        failing = False
        while not shutdown.is_set():
            try:
                await self.catch_up(after_outage=failing)
                if failing:
                    log.info("change feed: the change log is readable again")
                failing = False
            except Exception as exc:  # the feed must outlive any failure: it is not fatal
                if not failing:
                    log.warning("change feed: reading the change log failed (%s)", exc)
                failing = True
            await _sleep_unless(shutdown, self._events.poll_interval_ms / 1000)

    async def catch_up(self, *, after_outage: bool = False) -> int:
        """Read the log after the last id seen (and its gaps) and hand the changes on;
        how many. After an outage, first check that the log still reaches back to the
        cursor. Raises DatabaseUnavailable and the like."""
        cursor = self._cursor
        assert cursor is not None  # noqa: S101 - run() set it
        if after_outage:
            oldest = await run_transaction(self._engine, oldest_change, writes=False)
            if oldest is not None and oldest > cursor.high + 1:
                log.warning(
                    "change feed: changes %d to %d were pruned before this node read them; "
                    "waking every session to rescan",
                    cursor.high + 1,
                    oldest - 1,
                )
                cursor.high = oldest - 1
                cursor.gaps.clear()
                self._on_history_lost()
        found = 0
        while True:
            batch = await run_transaction(
                self._engine, lambda conn: read_changes(conn, cursor), writes=False
            )
            for change in batch:
                self._hand_on(change)
            found += len(batch)
            if len(batch) < 1000:
                break
        self.caught_up += found
        return found

    def _hand_on(self, change: Change) -> None:
        self.delivered += 1
        try:
            self._on_change(change)
        except Exception:  # one bad subscriber must not stop the feed
            log.exception("change feed: handing on change %d failed", change.id)

    # -- LISTEN/NOTIFY ----------------------------------------------------------------

    def _notified(self, payload: str) -> None:
        change = parse_payload(payload)
        cursor = self._cursor
        if change is None or cursor is None:
            log.warning("change feed: ignored a notification that is not a change")
            return
        if cursor.accept(change.id):
            self._hand_on(change)

    async def _listen_forever(self, shutdown: asyncio.Event) -> None:
        opened_before = False
        while not shutdown.is_set():
            try:
                listener = await ChangeListener.open(self._engine.url, self._notified)
            except Exception as exc:  # never fatal to the server: try again later
                log.warning("change feed: %s; retrying in %d ms", exc, self._events.reconnect_ms)
                await _sleep_unless(shutdown, self._events.reconnect_ms / 1000)
                continue
            self.listener_pid = listener.backend_pid
            if opened_before:
                self.reconnects += 1
            try:
                # LISTEN is on: from here no change is missed; read what came before.
                found = await self.catch_up(after_outage=opened_before)
                if opened_before:
                    log.info(
                        "change feed: listening again (backend %d); caught up %d change(s)",
                        listener.backend_pid,
                        found,
                    )
                else:
                    log.info("change feed: listening (backend %d)", listener.backend_pid)
                opened_before = True
                await self._watch(listener, shutdown)
            except Exception as exc:  # never fatal to the server: reconnect, catch up
                log.warning("change feed: %s (%s)", exc, type(exc).__name__)
            finally:
                await listener.close()
            if not shutdown.is_set():
                log.warning(
                    "change feed: the LISTEN connection was lost; reconnecting in %d ms "
                    "and catching up from the log",
                    self._events.reconnect_ms,
                )
                await _sleep_unless(shutdown, self._events.reconnect_ms / 1000)

    async def _watch(self, listener: ChangeListener, shutdown: asyncio.Event) -> None:
        """Until the connection is lost or `shutdown`: every check_interval_s, a ping and
        a read of the log (a NOTIFY lost without the connection noticing is found)."""
        while not shutdown.is_set() and not listener.lost.is_set():
            stop = asyncio.ensure_future(shutdown.wait())
            lost = asyncio.ensure_future(listener.lost.wait())
            try:
                done, _ = await asyncio.wait(
                    {stop, lost},
                    timeout=self._events.check_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in (stop, lost):
                    waiter.cancel()
            if done:
                return
            await listener.ping(PING_TIMEOUT_S)
            await self.catch_up()


async def prune_forever(
    engine: AsyncEngine,
    events: EventsConfig,
    throttle: LoginThrottle,
    shutdown: asyncio.Event,
) -> None:
    """Every PRUNE_EVERY_S: prune the change log to `keep_s`/`keep_rows` and drop the
    shared throttle's full buckets. Idempotent, so every node may run it."""
    samples: deque[tuple[float, int]] = deque()  # (monotonic time, newest id then)
    while not shutdown.is_set():
        try:
            newest = await run_transaction(engine, newest_change, writes=False)
            now = time.monotonic()
            samples.append((now, newest))
            below = 0
            while samples and samples[0][0] <= now - events.keep_s:
                below = samples.popleft()[1] + 1
            deleted = 0
            while True:
                # Every node prunes the same oldest rows; a deadlock victim runs again.
                step = await run_transaction(
                    engine,
                    partial(_prune_step, below=below, keep_rows=events.keep_rows),
                    retry=True,
                )
                deleted += step
                if not step:
                    break
            buckets = await throttle.prune_shared()
            if deleted or buckets:
                log.debug("pruned %d change(s) and %d full throttle bucket(s)", deleted, buckets)
        except Exception as exc:  # housekeeping is never fatal to the server
            log.warning("pruning the change log failed (%s)", type(exc).__name__)
        await _sleep_unless(shutdown, PRUNE_EVERY_S)


def _prune_step(conn: Connection, *, below: int, keep_rows: int) -> int:
    return prune_changes(conn, below=below, keep_rows=keep_rows)


async def _sleep_unless(shutdown: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(shutdown.wait(), seconds)

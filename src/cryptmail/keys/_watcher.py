"""Ends live sessions whose credentials changed, in this process, whatever process
changed them.

A session records the credential generation its login was checked at
(cm_accounts.credential_generation, see `_generation`) and registers a `Watch`. One
task per process, running while any watch is registered, reads the generations of every
watched user every `POLL_S` seconds in one query (`WHERE user_id IN (...)`) and calls
the `on_change` of each watch whose generation moved or whose account row is gone;
that watch is then unregistered. Idle, the process runs no query at all.

A change committed by another `serve` process sharing the database (or by the CLI) is
seen at the next poll: within `POLL_S` plus one query, or at once when `serve`'s change
feed hears of it (the change log's CREDENTIALS rows, db/_changes.py) and calls
`notice`; `serve` then polls only every `events.safety_poll_s`. A poll that fails (the database
away for a moment) is logged and tried again at the next interval; sessions go on
meanwhile, as they would with no database at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId
from cryptmail.keys._generation import read_generations
from cryptmail.tasks import cancel_and_wait

log = logging.getLogger(__name__)

POLL_S: Final = 2.0
"""Seconds between two polls; a change ends its sessions within this plus one query."""


@dataclass(eq=False)
class Watch:
    """One session's registration: its user, the generation its login was checked at,
    and what to call when that generation is no longer the current one."""

    user_id: UserId
    generation: int
    on_change: Callable[[], None] = field(repr=False)
    ended: bool = False


class CredentialWatcher:
    """The watches of one process and the task that polls for them; see the module
    docstring. Register with `watch`, unregister with `unwatch` when the session ends."""

    def __init__(self, engine: AsyncEngine, *, poll_s: float = POLL_S) -> None:
        self._engine = engine
        self.poll_s = poll_s
        self._watches: dict[UserId, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._noticed: set[UserId] = set()
        self._notice_task: asyncio.Task[None] | None = None

    def notice(self, user_id: UserId | None) -> None:
        """The credentials of `user_id` (None: of anyone) changed, as the change log
        says: check its watches now rather than at the next poll. Needs a running loop."""
        if user_id is not None and user_id not in self._watches:
            return  # no session of that user here: nothing to end
        self._noticed.update(self._watches if user_id is None else (user_id,))
        if self._notice_task is None or self._notice_task.done():
            self._notice_task = asyncio.get_running_loop().create_task(
                self._check_noticed(), name="credential-notice"
            )

    async def _check_noticed(self) -> None:
        while self._noticed:
            users, self._noticed = self._noticed, set()
            try:
                await self.check(users)
            except Exception:
                log.warning("credential watcher: a noticed change could not be read", exc_info=True)

    def watch(self, user_id: UserId, generation: int, on_change: Callable[[], None]) -> Watch:
        """Call `on_change` once the generation of `user_id` is not `generation` (or the
        account is gone). Starts the poll task on the running loop if it is not running."""
        handle = Watch(user_id, generation, on_change)
        self._watches.setdefault(user_id, set()).add(handle)
        self._start()
        return handle

    def unwatch(self, handle: Watch) -> None:
        """Forget `handle` (its session ended); a no-op if it is gone already."""
        watches = self._watches.get(handle.user_id)
        if watches is None:
            return
        watches.discard(handle)
        if not watches:
            del self._watches[handle.user_id]

    @property
    def watched_users(self) -> int:
        return len(self._watches)

    async def check(self, users: Collection[UserId] | None = None) -> int:
        """Poll once (only `users`, when given): end every watch whose generation moved;
        how many ended."""
        wanted = list(self._watches) if users is None else [u for u in users if u in self._watches]
        if not wanted:
            return 0
        async with self._engine.connect() as conn:
            current = await read_generations(conn, wanted)
        ended = 0
        for user_id in wanted:
            watches = self._watches.get(user_id, set())
            now = current.get(user_id)
            for handle in list(watches):
                if now == handle.generation:
                    continue
                self.unwatch(handle)
                handle.ended = True
                ended += 1
                try:
                    handle.on_change()
                except Exception:  # one session's bug must not keep the others open
                    log.exception("ending a session of user id %d failed", user_id)
        if ended:
            log.info("credentials changed: ended %d session(s)", ended)
        return ended

    def _start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the next watch starts it
        self._task = loop.create_task(self._poll_while_watched(), name="credential-watcher")

    async def _poll_while_watched(self) -> None:
        # The condition is tested with no await before the return, so a `watch` that
        # comes later finds the task done and starts a new one.
        while self._watches:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
            except Exception:
                log.warning(
                    "credential watcher: reading the generations failed; retrying in %.0f s",
                    self.poll_s,
                    exc_info=True,
                )

    async def close(self) -> None:
        """Stop polling (at shutdown); the watches stay registered but are not checked."""
        # Not `suppress(CancelledError)`: a cancellation of the closer itself must go on.
        await cancel_and_wait(self._task, self._notice_task)
        self._task = self._notice_task = None

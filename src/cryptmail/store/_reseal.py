"""Re-seal, at login, the index fields written before they were bound to their rows.

Folder names and subscriptions sealed in field versions 1 and 2 are bound to the user
only. They keep opening (with their old context), and the first login after the upgrade
binds them to their rows (field version 3) while the unlocked key is at hand. Most logins
find nothing to do: one read-only look, no write lock.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import run_transaction
from cryptmail.errors import DatabaseError, StoreUnavailable
from cryptmail.keys import UnlockedAccount
from cryptmail.store._mailboxes import reseal_names
from cryptmail.store._subscriptions import reseal_subscriptions

log = logging.getLogger(__name__)


async def reseal_old_fields(engine: AsyncEngine, account: UnlockedAccount) -> int:
    """Bind the user's older folder names and subscriptions to their rows; the number
    re-sealed. Best effort: a database error is logged and the work left to the next
    login (the old fields open meanwhile)."""

    def work(conn: Connection, *, write: bool) -> int:
        return reseal_names(conn, account, write=write) + reseal_subscriptions(
            conn, account, write=write
        )

    try:
        if not await run_transaction(engine, lambda c: work(c, write=False), writes=False):
            return 0
        # Parallel logins of one user meet here; each update is conditional on the value
        # read, so a deadlock victim can run again and skips what the other re-sealed.
        done = await run_transaction(engine, lambda c: work(c, write=True), retry=True)
    except (DatabaseError, StoreUnavailable) as exc:
        log.warning(
            "user id %d: re-sealing older folder names postponed to the next login: %s",
            account.user.id,
            type(exc).__name__,
        )
        return 0
    log.info(
        "user id %d: %d folder names and subscriptions bound to their rows", account.user.id, done
    )
    return done

"""Which process runs a user's background pass: a lease in cm_jobs (kind "index-pass").

Sessions of one user in several processes or on several nodes would otherwise each read
and decrypt every new message once. The holder renews the lease at each step; when it
stops (its user's last session ended) it drops the lease, and when it dies the lease
runs out, and a pass in another process takes over. A pass without the lease only does
what its own sessions ask for at once (SEARCH's and FETCH's urgent messages).

The row holds the user id, the kind, an expiry time and a token: random bytes sealed
under the user's data key, which the holder compares and never opens. Nothing about
the mail. Where two processes insert the first row at once (PostgreSQL, MariaDB: no
lock taken for a row that does not exist yet), the row with the lower id wins at the
next renewal and the other is deleted; until then both may work, which only costs time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount

KIND: Final = "index-pass"


def lease_token(account: UnlockedAccount) -> bytes:
    """A new holder's token (sealed random bytes: unique, and no plaintext at rest)."""
    return account.fields.seal(os.urandom(16), b"index-lease|%d" % account.user.id)


async def take_lease(engine: AsyncEngine, user_id: UserId, token: bytes, seconds: float) -> bool:
    """Take or renew the user's lease for `seconds`; False when another holder has it."""
    jobs = t.cm_jobs
    mine = (jobs.c.user_id == user_id, jobs.c.kind == KIND)

    def work(conn: Connection) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        rows = conn.execute(
            select(jobs.c.id, jobs.c.state_sealed, jobs.c.updated_at)
            .where(*mine)
            .order_by(jobs.c.id)
        ).all()
        if not rows:
            conn.execute(
                jobs.insert().values(
                    user_id=user_id, kind=KIND, state_sealed=token, updated_at=until
                )
            )
            return True
        first, *extra = rows
        if extra:  # a race on the first insert: the lowest id is the lease
            ids = [row.id for row in extra]
            conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
        held_by_me = first.state_sealed is not None and bytes(first.state_sealed) == token
        if not held_by_me and first.updated_at >= now:
            return False
        taken = conn.execute(
            update(jobs)
            .where(jobs.c.id == first.id, jobs.c.updated_at == first.updated_at)
            .values(state_sealed=token, updated_at=until)
        )
        return taken.rowcount == 1

    # Passes in several processes take and renew at once; a deadlock victim among them
    # runs again and reads the winner's row.
    return await run_transaction(engine, work, retry=True)


async def drop_lease(engine: AsyncEngine, user_id: UserId, token: bytes) -> None:
    """Give the lease up (nothing happens when another holder has it by now)."""
    jobs = t.cm_jobs

    def work(conn: Connection) -> None:
        conn.execute(
            delete(jobs).where(
                jobs.c.user_id == user_id, jobs.c.kind == KIND, jobs.c.state_sealed == token
            )
        )

    await run_transaction(engine, work, retry=True)

"""What a failing credential check costs: the same for every kind of address.

A failing check must not tell whether the address exists, has keys, or is an ISPmail
row waiting for its first login whose SQL hash is cheap (`{SHA512-CRYPT}`) or dear
(`{BLF-CRYPT}`). So every failing path of `_credential` does the same KDF work, one
stored-hash check and one Argon2id at slot cost, and then waits out the floor:

- the stored-hash check is the row's own hash where the path needs it, and otherwise
  the *cover hash*: the dearest hash among the rows without keys (one per scheme is
  timed, the one with the highest cost parameter), or if there are none an
  `{ARGON2ID}` hash at slot cost, what cryptmail writes itself;
- the floor is the measured cost of the cover hash plus one Argon2id (the median of a
  few runs), moved up a step whenever a failing check takes longer; a path cheaper than
  the dearest (a SHA512-CRYPT row when bcrypt rows exist, the failed-sign-in event a
  known user writes) sleeps until the floor.

Cover and floor are measured again every `REFRESH_S` seconds, so a new dearer import is
picked up, and an outlier of a loaded machine does not slow every failure for good.
"""

from __future__ import annotations

import logging
import re
import secrets
import statistics
import time
import weakref
from asyncio import sleep
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config
from cryptmail.db import tables as t
from cryptmail.keys._kdf import burn_kdf, hash_for_slot, verify_hash
from cryptmail.secret import Password

log = logging.getLogger(__name__)

REFRESH_S = 300.0
"""Seconds a measured cover hash and floor are used before they are measured again."""
CALIBRATION_RUNS = 3
"""Times the cover hash plus one Argon2id is measured; the floor starts at the median."""
RISE = 0.1
"""Share of the gap the floor moves up by after a failing check that took longer."""
MAX_FLOOR_S = 2.0
"""Longest a failing check is made to last: a machine stalled once must not make
every later failure this slow (a dearer row than this still stands out; say so)."""

_SCHEME = re.compile(r"^\{([A-Za-z0-9.-]+)\}")
_COSTS = (
    re.compile(r"\$2[abxy]?\$(\d{1,2})\$"),  # bcrypt: log2 rounds
    re.compile(r"rounds=(\d+)"),  # SHA-crypt
    re.compile(r"m=(\d+),t=(\d+)"),  # Argon2: memory x passes
)


@dataclass
class _Cover:
    password_hash: str
    floor_s: float
    until: float


_covers: weakref.WeakKeyDictionary[AsyncEngine, _Cover] = weakref.WeakKeyDictionary()


def cost_hint(password_hash: str) -> int:
    """A number that grows with the cost parameter of a hash of one scheme (not
    comparable across schemes: those are timed)."""
    for pattern in _COSTS:
        found = pattern.search(password_hash)
        if found is not None:
            value = 1
            for group in found.groups():
                value *= int(group)
            return value
    return 0


async def _dearest_per_scheme(engine: AsyncEngine) -> list[str]:
    users, accounts = t.virtual_users, t.cm_accounts
    query = (
        select(users.c.password)
        .select_from(users.outerjoin(accounts, accounts.c.user_id == users.c.id))
        .where(accounts.c.user_id.is_(None))
    )
    dearest: dict[str, str] = {}
    async with engine.connect() as conn:
        for (password_hash,) in await conn.execute(query):
            found = _SCHEME.match(password_hash)
            scheme = found.group(1).upper() if found else ""
            known = dearest.get(scheme)
            if known is None or cost_hint(password_hash) > cost_hint(known):
                dearest[scheme] = password_hash
    return list(dearest.values())


async def _measure(engine: AsyncEngine, config: Argon2Config) -> _Cover:
    wrong = Password.from_str(secrets.token_urlsafe(16))
    candidates = await _dearest_per_scheme(engine)
    if not candidates:
        candidates = [await hash_for_slot(wrong, config)]
        wrong = Password.from_str(secrets.token_urlsafe(16))
    cover, slowest = candidates[0], -1.0
    for candidate in candidates:
        started = time.monotonic()
        await verify_hash(candidate, wrong)
        elapsed = time.monotonic() - started
        if elapsed > slowest:
            cover, slowest = candidate, elapsed
    samples = []
    for _ in range(CALIBRATION_RUNS):  # the median: one sample may catch a stall
        started = time.monotonic()
        await verify_hash(cover, wrong)
        await burn_kdf(config)
        samples.append(time.monotonic() - started)
    floor = min(statistics.median(samples), MAX_FLOOR_S)
    log.info("failed logins: cover hash measured, %.0f ms with one Argon2id", floor * 1000)
    return _Cover(cover, floor, time.monotonic() + REFRESH_S)


async def _current(engine: AsyncEngine, config: Argon2Config) -> _Cover:
    cover = _covers.get(engine)
    if cover is not None and time.monotonic() < cover.until:
        return cover
    if cover is not None:
        cover.until = time.monotonic() + REFRESH_S  # the others keep it meanwhile
    cover = await _measure(engine, config)
    _covers[engine] = cover
    return cover


class FailureClock:
    """The clock of one credential check: `cover` for the hash to check when the path
    has none of its own, `pad` before a failure is answered. Time spent measuring the
    cover (once per REFRESH_S) is not counted as the check's."""

    def __init__(self, engine: AsyncEngine, config: Argon2Config) -> None:
        self._engine = engine
        self._config = config
        self._started = time.monotonic()
        self._measuring_s = 0.0

    async def cover(self) -> str:
        started = time.monotonic()
        cover = await _current(self._engine, self._config)
        self._measuring_s += time.monotonic() - started
        return cover.password_hash

    async def pad(self) -> None:
        """Wait until this failing check has cost the floor; a dearer one raises it."""
        await self.cover()
        cover = _covers[self._engine]
        elapsed = time.monotonic() - self._started - self._measuring_s
        if elapsed >= cover.floor_s:
            # Dearer than measured (a loaded machine, a dearer row): move towards it, a
            # step at a time, so that one stall does not set the floor on its own.
            cover.floor_s = min(cover.floor_s + RISE * (elapsed - cover.floor_s), MAX_FLOOR_S)
            return
        await sleep(cover.floor_s - elapsed)


def seed_cover(engine: AsyncEngine, password_hash: str, floor_s: float) -> None:
    """Use this cover and floor for REFRESH_S instead of measuring (tests that count
    KDF calls per path)."""
    _covers[engine] = _Cover(password_hash, floor_s, time.monotonic() + REFRESH_S)


def forget_cover(engine: AsyncEngine) -> None:
    """Measure again at the next failure."""
    _covers.pop(engine, None)

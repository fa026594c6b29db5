"""The users an address reaches, as RCPT found them, kept for a moment and reused by the
next messages to it in the same delivering process. (Their active Sieve scripts are
read again for every message: a script changed over ManageSieve applies at once.)

The lookup (user, aliases, active key, INBOX) was a read transaction of its own for
every message: about a tenth of a 4 KB delivery's CPU at eight connections. Mail
comes in bursts to the same addresses (a list, a busy mailbox, Postfix's queue after an
outage), so a second's reuse takes most of those reads away. What a reused lookup may
get wrong for that second, and why it is safe:

- the key and `crypt`: the row's commit checks both again (`store._check_sealing`); a
  copy made for a key or setting that changed meanwhile is dropped, the entry too, and
  the message is delivered again after a fresh lookup;
- an alias: the change reaches delivery a second later, as one committed while a
  message is in DATA does (the quota is checked in the commit anyway);
- a deleted user: the commit's check finds no user, and the fresh lookup none either;
  the sender retries, and its next RCPT is refused as unknown.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from cryptmail.db import UserId

T = TypeVar("T")

MAX_ADDRESSES = 4096
"""Addresses kept at most; the oldest goes first (a second's traffic rarely has more)."""


class RecipientCache(Generic[T]):
    """Lookups by address for `seconds` (0: none kept), with the user ids each reaches
    (to forget every address of a user whose key changed)."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._found: OrderedDict[str, tuple[float, frozenset[UserId], T]] = OrderedDict()

    def get(self, address: str) -> T | None:
        """The lookup of `address` if made less than `seconds` ago."""
        entry = self._found.get(address)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._found[address]
            return None
        return entry[2]

    def put(self, address: str, users: Iterable[UserId], found: T) -> None:
        """Keep `found` (the lookup of `address`, reaching `users`)."""
        if self._seconds <= 0:
            return
        self._found.pop(address, None)
        self._found[address] = (self._clock() + self._seconds, frozenset(users), found)
        while len(self._found) > MAX_ADDRESSES:
            self._found.popitem(last=False)

    def forget_user(self, user_id: UserId) -> None:
        """Drop every address that reaches `user_id`."""
        for address in [a for a, (_t, users, _f) in self._found.items() if user_id in users]:
            del self._found[address]

"""Growing delays after failed logins, per address and per client address.

Shared by IMAP and the web pages (one instance per process, made by `serve`). A failure
doubles the delay for that address and that client (0.5 s, 1 s, 2 s ... up to
`max_delay_s`); a success clears the address; entries fade after `forget_after_s`.

Attempts still in flight count as failures to come: `wait` reserves a place before it
sleeps, and `failed` / `succeeded` settle it. So a burst of N parallel attempts is spread
out as N failures in a row would be, instead of all passing the check before any failure
is counted. A reservation nobody settles (the caller raised something else) lapses after
`pending_ttl_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    pending: deque[float] = field(default_factory=deque)


@dataclass
class LoginThrottle:
    base_delay_s: float = 0.5
    max_delay_s: float = 15.0
    forget_after_s: float = 900.0
    max_entries: int = 100_000
    pending_ttl_s: float = 120.0
    _by_address: dict[str, _Record] = field(default_factory=dict)
    _by_client: dict[str, _Record] = field(default_factory=dict)

    def _keys(self, address: str, client_ip: str) -> tuple[tuple[dict[str, _Record], str], ...]:
        return ((self._by_address, address.lower()), (self._by_client, client_ip))

    def _count(self, table: dict[str, _Record], key: str, now: float) -> int:
        record = table.get(key)
        if record is None:
            return 0
        while record.pending and now - record.pending[0] > self.pending_ttl_s:
            record.pending.popleft()
        if not record.pending and now - record.last > self.forget_after_s:
            del table[key]
            return 0
        failures = record.failures if now - record.last <= self.forget_after_s else 0
        return failures + len(record.pending)

    def _delay(self, count: int) -> float:
        if count == 0:
            return 0.0
        return float(min(self.max_delay_s, self.base_delay_s * (2 ** (count - 1))))

    def delay_for(self, address: str, client_ip: str) -> float:
        """The delay the next attempt gets: earlier failures plus attempts in flight."""
        now = time.monotonic()
        return self._delay(
            max(self._count(table, key, now) for table, key in self._keys(address, client_ip))
        )

    async def wait(self, address: str, client_ip: str) -> None:
        """Reserve this attempt's place, then sleep as long as the ones before it ask.

        Settle the attempt with `failed` or `succeeded` afterwards.
        """
        now = time.monotonic()
        delay = self.delay_for(address, client_ip)
        for table, key in self._keys(address, client_ip):
            if len(table) >= self.max_entries:
                table.clear()  # under a flood, forget rather than grow without bound
            record = table.setdefault(key, _Record(last=now))
            record.pending.append(now)
        if delay:
            await asyncio.sleep(delay)

    def failed(self, address: str, client_ip: str) -> None:
        now = time.monotonic()
        for table, key in self._keys(address, client_ip):
            if len(table) >= self.max_entries:
                table.clear()
            record = table.setdefault(key, _Record())
            if record.pending:
                record.pending.popleft()
            if now - record.last > self.forget_after_s:
                record.failures = 0
            record.failures += 1
            record.last = now

    def succeeded(self, address: str, client_ip: str) -> None:
        self._by_address.pop(address.lower(), None)
        record = self._by_client.get(client_ip)
        if record is not None and record.pending:
            record.pending.popleft()

"""Growing delays after failed logins, per address and per client address.

Shared by IMAP and the web pages (one instance per process, made by `serve`). A failure
doubles the delay for that address and that client (0.5 s, 1 s, 2 s ... up to
`max_delay_s`); a success clears the address; entries fade after `forget_after_s`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    base_delay_s: float = 0.5
    max_delay_s: float = 15.0
    forget_after_s: float = 900.0
    max_entries: int = 100_000
    _by_address: dict[str, _Record] = field(default_factory=dict)
    _by_client: dict[str, _Record] = field(default_factory=dict)

    def delay_for(self, address: str, client_ip: str) -> float:
        now = time.monotonic()
        worst = 0
        for table, key in ((self._by_address, address.lower()), (self._by_client, client_ip)):
            record = table.get(key)
            if record is None:
                continue
            if now - record.last > self.forget_after_s:
                del table[key]
                continue
            worst = max(worst, record.failures)
        if worst == 0:
            return 0.0
        return float(min(self.max_delay_s, self.base_delay_s * (2 ** (worst - 1))))

    async def wait(self, address: str, client_ip: str) -> None:
        """Sleep as long as earlier failures ask, before trying this login."""
        delay = self.delay_for(address, client_ip)
        if delay:
            await asyncio.sleep(delay)

    def failed(self, address: str, client_ip: str) -> None:
        now = time.monotonic()
        for table, key in ((self._by_address, address.lower()), (self._by_client, client_ip)):
            if len(table) >= self.max_entries:
                table.clear()  # under a flood, forget rather than grow without bound
            record = table.setdefault(key, _Record())
            record.failures += 1
            record.last = now

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address.lower(), None)

"""The login throttle: it limits the rate of wrong guesses, not the number of logins.

Shared by IMAP and the web pages (one instance per process, made by `serve`). Every
credential check first reserves a token from the bucket of the address tried and from
the bucket of the client's address (see `_buckets`); if either is empty the attempt is
refused (`TooManyAttempts`, with the seconds until a token is back) instead of
sleeping, so no more than a bucket's burst is ever being checked at once. One case
waits instead: when a bucket is empty only because attempts are being checked right
now (a phone and a desktop logging in together, or a webmail's parallel requests),
`acquire` waits for those to settle, at most `patience_s`: a right password gives its
token back and the next attempt goes on; a wrong one keeps it and the waiter is then
refused. So parallel guesses are refused once the burst is spent, and the owner's
parallel logins are never refused, only held for the length of a check.

The outcome settles the reservation:
a right password gives both tokens back (a success costs nothing and delays nobody,
and it does not wipe the failures others ran up for that address); a wrong one keeps
them; any other error (`release`) gives them back, as no password was judged.

Several nodes: with `auth.shared_buckets` on (the default on PostgreSQL and MariaDB),
each failure is also written to the shared database (`_shared_buckets`), and every
attempt first lowers its local buckets to the shared level, so a guess on one node
counts on all. Attempts in flight are counted per node only: N nodes can check up to N
times a bucket's remaining tokens at once, once, before the failures are written.

Addresses are folded as the user look-up folds them (`users.fold_address`), IPv6
clients are counted per /64. Clients in `auth.trusted_networks` (webmail hosts that
log in on behalf of many people) have no client bucket of their own; the IMAP layer may
then throttle the real client address they pass (ID `x-originating-ip`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed, DatabaseError, StoreUnavailable, TooManyAttempts
from cryptmail.keys._buckets import BucketTable
from cryptmail.keys._shared_buckets import SharedBuckets, SharedKey, bucket_hash_key
from cryptmail.metrics import current as current_metrics
from cryptmail.users import fold_address

log = logging.getLogger(__name__)

T = TypeVar("T")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Reservation:
    """The tokens one attempt holds until `failed`, `succeeded` or `release`."""

    address_key: str
    client_key: str | None
    """None: the client is in a trusted network and has no bucket."""


def client_key(client_ip: str) -> str:
    """The bucket key of a client address: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    def __init__(
        self,
        *,
        address_burst: int = 5,
        address_refill_s: float = 20.0,
        client_burst: int = 50,
        client_refill_s: float = 6.0,
        max_entries: int = 100_000,
        trusted_networks: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBuckets | None = None,
    ) -> None:
        self._shared = shared
        self._pending: set[asyncio.Task[None]] = set()
        self._by_address = BucketTable(address_burst, address_refill_s, max_entries, clock)
        self._by_client = BucketTable(client_burst, client_refill_s, max_entries, clock)
        self._trusted: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted_networks
        )
        self.refusals = 0
        """Attempts refused so far (for tests and the operator)."""
        self.held_back = 0
        """Attempts that waited for others in flight to settle (see `acquire`)."""
        self._held: Counter[str] = Counter()
        """Tokens taken by attempts still being checked, by bucket key."""
        self._settled: list[asyncio.Future[None]] = []

    @classmethod
    def from_config(cls, config: Config, engine: AsyncEngine | None = None) -> LoginThrottle:
        """The configured throttle; with `engine`, its buckets are shared in that
        database when `auth.shared_buckets` says so (needs the server key loaded)."""
        auth = config.auth
        shared = None
        if engine is not None and (
            auth.shared_buckets == "database"
            or (auth.shared_buckets == "auto" and engine.dialect.name != "sqlite")
        ):
            shared = SharedBuckets(engine, bucket_hash_key())
        return cls(
            address_burst=auth.address_burst,
            address_refill_s=auth.address_refill_s,
            client_burst=auth.client_burst,
            client_refill_s=auth.client_refill_s,
            trusted_networks=auth.trusted_networks,
            shared=shared,
        )

    @property
    def shared(self) -> bool:
        """Whether failures are counted in the shared database too."""
        return self._shared is not None

    def is_trusted(self, client_ip: str) -> bool:
        """Whether `client_ip` is in `auth.trusted_networks`."""
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def _reservation(self, address: str, client_ip: str) -> Reservation:
        client = None if self.is_trusted(client_ip) else client_key(client_ip)
        return Reservation(fold_address(address), client)

    def reserve(self, address: str, client_ip: str) -> Reservation:
        """Take a token for `address` and one for `client_ip`, before checking a password.

        Raises TooManyAttempts (taking nothing) when either bucket is empty.
        """
        reservation = self._reservation(address, client_ip)
        wait_s = self._shortage_s(reservation)
        if wait_s > 0:
            self.refusals += 1
            raise TooManyAttempts(wait_s)
        self._take(reservation)
        return reservation

    async def acquire(
        self, address: str, client_ip: str, *, patience_s: float = 10.0
    ) -> Reservation:
        """`reserve`, but while a bucket is empty only because of attempts in flight,
        wait (at most `patience_s`) for them to settle instead of refusing.

        Raises TooManyAttempts when a bucket is empty through failures, or still empty
        after `patience_s`.
        """
        reservation = self._reservation(address, client_ip)
        await self._pull_shared(reservation)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        waited = False
        while True:
            wait_s = self._shortage_s(reservation)
            if wait_s <= 0:
                self._take(reservation)
                return reservation
            left = deadline - loop.time()
            if left <= 0 or not self._in_flight_frees(reservation):
                self.refusals += 1
                raise TooManyAttempts(wait_s)
            if not waited:
                self.held_back += 1
                waited = True
            settled: asyncio.Future[None] = loop.create_future()
            self._settled.append(settled)
            try:
                async with asyncio.timeout(left):
                    await settled
            except TimeoutError:
                pass

    def _shortage_s(self, reservation: Reservation) -> float:
        wait_s = self._by_address.wait_s(reservation.address_key)
        if reservation.client_key is not None:
            wait_s = max(wait_s, self._by_client.wait_s(reservation.client_key))
        return wait_s

    def _in_flight_frees(self, reservation: Reservation) -> bool:
        """Whether settling the attempts in flight could refill every empty bucket."""
        pairs = [(self._by_address, reservation.address_key)]
        if reservation.client_key is not None:
            pairs.append((self._by_client, reservation.client_key))
        return all(
            table.level(key) + self._held[key] >= 1.0
            for table, key in pairs
            if table.wait_s(key) > 0
        )

    def _take(self, reservation: Reservation) -> None:
        self._by_address.take(reservation.address_key)
        self._held[reservation.address_key] += 1
        if reservation.client_key is not None:
            self._by_client.take(reservation.client_key)
            self._held[reservation.client_key] += 1

    def _settle(self, reservation: Reservation) -> None:
        for key in (reservation.address_key, reservation.client_key):
            if key is not None and self._held[key] > 0:
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]
        waiters, self._settled = self._settled, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def check(
        self,
        address: str,
        client_ip: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        protocol: str = "other",
    ) -> T:
        """`acquire`, run `attempt` (the credential check), settle by its outcome: an
        AuthenticationFailed keeps the tokens spent, any other error gives them back, a
        success gives them back. Every protocol's login goes through here, and is
        counted (`metrics`) under `protocol` and its outcome.

        Raises TooManyAttempts (without running `attempt`) and what `attempt` raises.
        """
        metrics = current_metrics()
        try:
            reservation = await self.acquire(address, client_ip)
        except TooManyAttempts:
            metrics.login(protocol, "refused")
            raise
        try:
            result = await attempt()
        except AuthenticationFailed:
            self._settle(reservation)
            await self._push_failure(reservation)  # counted on every node before the reply
            metrics.login(protocol, "failed")
            raise
        except BaseException:
            self.release(reservation)
            metrics.login(protocol, "error")
            raise
        self.succeeded(reservation)
        metrics.login(protocol, "ok")
        return result

    def failed(self, reservation: Reservation) -> None:
        """The password was wrong: the tokens stay spent (and, when shared, are written
        to the database in the background)."""
        self._settle(reservation)
        if self._shared is not None:
            task = asyncio.get_running_loop().create_task(self._push_failure(reservation))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _shared_keys(self, reservation: Reservation) -> list[tuple[BucketTable, str, SharedKey]]:
        assert self._shared is not None  # noqa: S101 - callers check
        pairs = [(self._by_address, reservation.address_key, "a:")]
        if reservation.client_key is not None:
            pairs.append((self._by_client, reservation.client_key, "c:"))
        return [
            (table, key, self._shared.key(prefix + key, table.burst, table.refill_s))
            for table, key, prefix in pairs
        ]

    async def _pull_shared(self, reservation: Reservation) -> None:
        """Lower the local buckets to the shared levels (other nodes' failures). When
        the database cannot be read, the local buckets alone decide."""
        if self._shared is None:
            return
        keys = self._shared_keys(reservation)
        try:
            levels = await self._shared.levels([shared for _t, _k, shared in keys])
        except (StoreUnavailable, DatabaseError) as exc:
            log.warning("shared login throttle unreadable (%s); using this node's", exc)
            return
        for table, key, shared in keys:
            level = levels.get(shared.key_hash)
            if level is not None:
                table.lower_to(key, level - self._held[key])

    async def _push_failure(self, reservation: Reservation) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.spend([shared for _t, _k, shared in self._shared_keys(reservation)])
        except (StoreUnavailable, DatabaseError) as exc:
            log.warning("a failed login could not be written to the shared throttle (%s)", exc)

    async def prune_shared(self) -> int:
        """Delete the shared buckets that are full again (housekeeping); how many."""
        return 0 if self._shared is None else await self._shared.prune()

    def succeeded(self, reservation: Reservation) -> None:
        """The password was right: give the tokens back."""
        self.release(reservation)

    def release(self, reservation: Reservation) -> None:
        """No password was judged (another error): give the tokens back."""
        self._by_address.give_back(reservation.address_key)
        if reservation.client_key is not None:
            self._by_client.give_back(reservation.client_key)
        self._settle(reservation)

    def debt(self, address: str, client_ip: str) -> float:
        """Tokens missing from the fuller-spent of the two buckets (0: no recent failure)."""
        reservation = self._reservation(address, client_ip)
        spent = self._by_address.burst - self._by_address.level(reservation.address_key)
        if reservation.client_key is not None:
            client = self._by_client.burst - self._by_client.level(reservation.client_key)
            spent = max(spent, client)
        return spent

    def entries(self) -> tuple[int, int]:
        """Buckets held: (by address, by client)."""
        return len(self._by_address), len(self._by_client)

"""LoginThrottle: token buckets per address and per client; only failures cost.

Every test injects the clock, so nothing here waits or depends on wall time.
"""

from __future__ import annotations

import asyncio

import pytest

from cryptmail.errors import AuthenticationFailed, KdfBusy, TooManyAttempts
from cryptmail.keys import LoginThrottle, Reservation
from hand_clock import HandClock

A = "alice@example.org"
IP = "192.0.2.1"


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


def throttle_with(clock: HandClock, **kwargs: object) -> LoginThrottle:
    options: dict[str, object] = {
        "address_burst": 5,
        "address_refill_s": 20.0,
        "client_burst": 50,
        "client_refill_s": 6.0,
    }
    options.update(kwargs)
    return LoginThrottle(clock=clock, **options)  # type: ignore[arg-type]


def fail(throttle: LoginThrottle, address: str = A, ip: str = IP) -> None:
    throttle.failed(throttle.reserve(address, ip))


def test_the_burst_then_one_per_refill(clock: HandClock) -> None:
    throttle = throttle_with(clock)
    for _ in range(5):
        fail(throttle)
    with pytest.raises(TooManyAttempts) as refused:
        throttle.reserve(A, IP)
    assert refused.value.retry_after_s == pytest.approx(20.0)
    assert throttle.refusals == 1
    clock.now += 20.0
    fail(throttle)  # one token came back
    with pytest.raises(TooManyAttempts):
        throttle.reserve(A, IP)


def test_address_and_client_are_counted_apart(clock: HandClock) -> None:
    """(Kept from the doubling-delay throttle: both counts apply, the address's
    case-insensitively.)"""
    throttle = throttle_with(clock)
    fail(throttle, "Alice@Example.org")
    fail(throttle, "alice@example.org")
    assert throttle.debt("ALICE@example.org", "198.51.100.7") == 2
    assert throttle.debt("bob@example.org", IP) == 2
    assert throttle.debt("bob@example.org", "198.51.100.7") == 0


def test_another_users_login_from_the_same_client_is_not_refused(clock: HandClock) -> None:
    """(b) Six failures for A from one address, then B from there is let through at once."""
    throttle = throttle_with(clock)
    for _ in range(5):
        fail(throttle)
    with pytest.raises(TooManyAttempts):
        throttle.reserve(A, IP)
    throttle.succeeded(throttle.reserve("bob@example.org", IP))
    assert throttle.refusals == 1


def test_successes_cost_nothing_however_parallel(clock: HandClock) -> None:
    """(a) Ten logins in flight from one client, over and over: none refused."""
    throttle = throttle_with(clock)
    for _ in range(30):
        reservations = [throttle.reserve(f"user{n}@example.org", IP) for n in range(10)]
        for reservation in reservations:
            throttle.succeeded(reservation)
    assert throttle.refusals == 0
    assert throttle.debt("bob@example.org", IP) == 0


def test_parallel_guesses_beyond_the_burst_are_refused_not_queued(clock: HandClock) -> None:
    """(c) Reservations happen before the check: only the burst is ever in flight."""
    throttle = throttle_with(clock)
    admitted, refused = [], 0
    for _ in range(20):
        try:
            admitted.append(throttle.reserve(A, IP))
        except TooManyAttempts:
            refused += 1
    assert (len(admitted), refused) == (5, 15)
    for reservation in admitted:
        throttle.failed(reservation)
    assert throttle.debt(A, "198.51.100.7") == 5


async def test_parallel_wrong_attempts_in_a_running_loop(clock: HandClock) -> None:
    """(Replaces "a parallel burst is delayed as failures in a row": the burst is now
    refused, and all admitted failures count.)"""
    throttle = throttle_with(clock)
    reached = 0

    async def wrong_attempt() -> str:
        nonlocal reached
        try:
            reservation = throttle.reserve(A, IP)
        except TooManyAttempts:
            return "refused"
        reached += 1
        await asyncio.sleep(0)  # the password check, in parallel with the others
        throttle.failed(reservation)
        return "failed"

    outcomes = await asyncio.gather(*(wrong_attempt() for _ in range(20)))
    assert reached == 5
    assert outcomes.count("refused") == 15


def test_a_success_does_not_clear_the_address(clock: HandClock) -> None:
    """(d) The victim's login gives back its own token, not the attacker's debt.
    (The doubling throttle cleared the address on success; the issue asks otherwise.)"""
    throttle = throttle_with(clock)
    for _ in range(4):
        fail(throttle, ip="203.0.113.9")
    throttle.succeeded(throttle.reserve(A, IP))
    assert throttle.debt(A, "198.51.100.7") == 4
    fail(throttle, ip="203.0.113.9")
    with pytest.raises(TooManyAttempts):
        throttle.reserve(A, "203.0.113.10")


def test_address_keys_are_folded_as_the_user_look_up_folds_them(clock: HandClock) -> None:
    """(e)"""
    throttle = throttle_with(clock)
    for _ in range(5):
        fail(throttle, " BOB@example.org\t", ip=f"198.51.100.{_}")
    with pytest.raises(TooManyAttempts):
        throttle.reserve("bob@example.org", "203.0.113.1")


def test_failures_fade(clock: HandClock) -> None:
    throttle = throttle_with(clock)
    fail(throttle)
    clock.now += 19.0
    assert throttle.debt(A, IP) == pytest.approx(1.0 / 20 * 1)  # 1 - 19/20 of a token left
    clock.now += 2.0
    assert throttle.debt(A, IP) == 0


def test_released_attempts_cost_nothing(clock: HandClock) -> None:
    """An attempt that ended in another error (database gone, KDF queue full) is given back."""
    throttle = throttle_with(clock)
    for _ in range(10):
        throttle.release(throttle.reserve(A, IP))
    assert throttle.debt(A, IP) == 0


def test_a_flood_is_bounded_but_the_worst_offender_stays(clock: HandClock) -> None:
    """(f) Past the cap, full and nearly full buckets go first; the deepest debt stays."""
    throttle = throttle_with(clock, max_entries=10)
    for _ in range(5):
        fail(throttle, "victim@example.org", ip="203.0.113.1")
    for n in range(35):
        fail(throttle, f"user{n}@example.org", f"192.0.2.{n}")
        clock.now += 0.1  # 3.5 s in all: the victim's debt has not refilled
    assert throttle.entries() <= (10, 10)
    with pytest.raises(TooManyAttempts):
        throttle.reserve("victim@example.org", "198.51.100.1")


def test_full_buckets_go_before_any_in_debt(clock: HandClock) -> None:
    throttle = throttle_with(clock, max_entries=4)
    fail(throttle, "old@example.org", "192.0.2.1")
    clock.now += 100.0  # old@ has refilled: quiet, nothing to remember
    fail(throttle, "a@example.org", "192.0.2.2")
    fail(throttle, "b@example.org", "192.0.2.3")
    fail(throttle, "c@example.org", "192.0.2.4")
    fail(throttle, "d@example.org", "192.0.2.5")  # needs room
    for address in ("a@example.org", "b@example.org", "c@example.org", "d@example.org"):
        assert throttle.debt(address, "198.51.100.1") == 1


def test_trusted_networks_skip_the_client_bucket_only(clock: HandClock) -> None:
    """(g) A webmail host's own address is exempt; the address bucket still applies."""
    throttle = throttle_with(clock, client_burst=2, trusted_networks=("10.0.0.0/24",))
    assert throttle.is_trusted("10.0.0.5") and not throttle.is_trusted("10.0.1.5")
    for n in range(5):
        fail(throttle, f"user{n}@example.org", "10.0.0.5")
    fail(throttle, "x@example.org", "10.0.0.5")
    assert throttle.refusals == 0
    for _ in range(4):
        fail(throttle, "user0@example.org", "10.0.0.5")
    with pytest.raises(TooManyAttempts):
        throttle.reserve("user0@example.org", "10.0.0.5")
    fail(throttle, "y@example.org", "198.51.100.1")
    fail(throttle, "z@example.org", "198.51.100.1")
    with pytest.raises(TooManyAttempts):
        throttle.reserve("w@example.org", "198.51.100.1")


def test_ipv6_clients_share_a_bucket_per_64(clock: HandClock) -> None:
    throttle = throttle_with(clock, client_burst=2)
    fail(throttle, "a@example.org", "2001:db8::1")
    fail(throttle, "b@example.org", "2001:db8::2")
    with pytest.raises(TooManyAttempts):
        throttle.reserve("c@example.org", "2001:db8::ffff:3")
    throttle.succeeded(throttle.reserve("c@example.org", "2001:db8:0:1::1"))


async def test_acquire_waits_for_attempts_in_flight_and_goes_on_after_a_success() -> None:
    """The owner's parallel logins beyond the burst are held, not refused: the bucket is
    empty only because two checks are running, and one of them succeeds."""
    throttle = LoginThrottle(address_burst=2, client_burst=50)
    first = throttle.reserve("alice@example.org", "192.0.2.1")
    second = throttle.reserve("alice@example.org", "192.0.2.1")
    third = asyncio.create_task(throttle.acquire("alice@example.org", "192.0.2.1"))
    await asyncio.sleep(0)
    assert not third.done() and throttle.held_back == 1
    throttle.succeeded(first)
    assert isinstance(await third, Reservation)
    throttle.succeeded(second)
    assert throttle.refusals == 0


async def test_acquire_refuses_a_waiter_once_the_attempts_in_flight_fail() -> None:
    throttle = LoginThrottle(address_burst=2, client_burst=50)
    first = throttle.reserve("alice@example.org", "192.0.2.1")
    second = throttle.reserve("alice@example.org", "192.0.2.1")
    third = asyncio.create_task(throttle.acquire("alice@example.org", "192.0.2.1"))
    await asyncio.sleep(0)
    throttle.failed(first)
    await asyncio.sleep(0)
    assert not third.done()  # the second may still succeed and give its token back
    throttle.failed(second)
    with pytest.raises(TooManyAttempts):
        await third
    assert throttle.refusals == 1


async def test_acquire_refuses_at_once_when_failures_emptied_the_bucket() -> None:
    throttle = LoginThrottle(address_burst=2, client_burst=50)
    for _ in range(2):
        throttle.failed(throttle.reserve("alice@example.org", "192.0.2.1"))
    with pytest.raises(TooManyAttempts):
        await asyncio.wait_for(throttle.acquire("alice@example.org", "192.0.2.1"), 1)
    assert throttle.held_back == 0


async def test_check_settles_the_reservation_by_the_attempts_outcome(clock: HandClock) -> None:
    """What IMAP, POP3, SASL and the web all call: a wrong credential keeps its tokens,
    a right one and any other error give them back, an empty bucket runs nothing."""
    throttle = throttle_with(clock, address_burst=2)

    async def right() -> str:
        return "unlocked"

    async def wrong() -> str:
        raise AuthenticationFailed("wrong password")

    async def broken() -> str:
        raise KdfBusy()

    assert await throttle.check(A, IP, right) == "unlocked"
    with pytest.raises(KdfBusy):
        await throttle.check(A, IP, broken)
    assert throttle.debt(A, IP) == 0
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await throttle.check(A, IP, wrong)
    ran: list[str] = []

    async def counted() -> str:
        ran.append("ran")
        return "unlocked"

    with pytest.raises(TooManyAttempts):
        await throttle.check(A, IP, counted)
    assert ran == []

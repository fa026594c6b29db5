"""LoginThrottle: doubling delays per address and per client, capped, fading, bounded."""

from __future__ import annotations

import pytest

from cryptmail.keys import LoginThrottle


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("cryptmail.keys._throttle.time.monotonic", lambda: now[0])
    return now


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the throttle asked for, without waiting them out."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr("cryptmail.keys._throttle.asyncio.sleep", sleep)
    return delays


def test_delays_double_up_to_the_cap(clock: list[float]) -> None:
    throttle = LoginThrottle(base_delay_s=0.5, max_delay_s=3.0)
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 0.0
    delays = []
    for _ in range(5):
        throttle.failed("alice@example.org", "192.0.2.1")
        delays.append(throttle.delay_for("alice@example.org", "192.0.2.1"))
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_address_and_client_are_counted_apart(clock: list[float]) -> None:
    throttle = LoginThrottle()
    throttle.failed("Alice@Example.org", "192.0.2.1")
    throttle.failed("alice@example.org", "192.0.2.1")
    # Same address from elsewhere: the address's count applies (case-insensitive).
    assert throttle.delay_for("ALICE@example.org", "198.51.100.7") == 1.0
    # Another address from the same client: the client's count applies.
    assert throttle.delay_for("bob@example.org", "192.0.2.1") == 1.0
    assert throttle.delay_for("bob@example.org", "198.51.100.7") == 0.0


def test_success_clears_the_address_not_the_client(clock: list[float]) -> None:
    throttle = LoginThrottle()
    throttle.failed("alice@example.org", "192.0.2.1")
    throttle.succeeded("ALICE@example.org", "192.0.2.1")
    assert throttle.delay_for("alice@example.org", "198.51.100.7") == 0.0
    assert throttle.delay_for("bob@example.org", "192.0.2.1") == 0.5


async def test_successes_from_one_client_do_not_add_up(
    clock: list[float], slept: list[float]
) -> None:
    throttle = LoginThrottle()
    for _ in range(30):
        await throttle.wait("alice@example.org", "192.0.2.1")
        throttle.succeeded("alice@example.org", "192.0.2.1")
    assert slept == []
    assert throttle.delay_for("bob@example.org", "192.0.2.1") == 0.0


def test_failures_fade(clock: list[float]) -> None:
    throttle = LoginThrottle(forget_after_s=900.0)
    throttle.failed("alice@example.org", "192.0.2.1")
    clock[0] += 899.0
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 0.5
    clock[0] += 2.0
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 0.0


def test_a_flood_does_not_grow_without_bound(clock: list[float]) -> None:
    throttle = LoginThrottle(max_entries=10)
    for n in range(35):
        throttle.failed(f"user{n}@example.org", f"192.0.2.{n}")
    assert len(throttle._by_address) <= 10
    assert len(throttle._by_client) <= 10


async def test_wait_sleeps_for_the_delay(clock: list[float], slept: list[float]) -> None:
    throttle = LoginThrottle()
    await throttle.wait("alice@example.org", "192.0.2.1")
    throttle.failed("alice@example.org", "192.0.2.1")
    throttle.failed("alice@example.org", "192.0.2.1")
    await throttle.wait("alice@example.org", "192.0.2.1")
    assert slept == [1.0]


async def test_a_parallel_burst_is_delayed_as_failures_in_a_row(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("cryptmail.keys._throttle.asyncio.sleep", fake_sleep)
    throttle = LoginThrottle(base_delay_s=0.5, max_delay_s=60.0)

    async def wrong_attempt() -> None:
        await throttle.wait("alice@example.org", "192.0.2.1")
        await real_sleep(0)  # the password check, in parallel with the others
        throttle.failed("alice@example.org", "192.0.2.1")

    await asyncio.gather(*(wrong_attempt() for _ in range(5)))
    # Each attempt waited as if those before it had already failed.
    assert sorted(slept) == [0.5, 1.0, 2.0, 4.0]
    # All five failures count: the next attempt gets the sixth delay.
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 8.0


def test_an_unsettled_reservation_lapses(clock: list[float]) -> None:
    import asyncio

    throttle = LoginThrottle(pending_ttl_s=60.0)
    asyncio.run(throttle.wait("alice@example.org", "192.0.2.1"))
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 0.5
    clock[0] += 61
    assert throttle.delay_for("alice@example.org", "192.0.2.1") == 0.0

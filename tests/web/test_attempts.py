"""The throttled credential check shared by pages and API."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from cryptmail.errors import AuthenticationFailed, StoreUnavailable
from cryptmail.web._attempts import address_tag, throttled
from cryptmail.web._context import WebContext
from web.conftest import RecordingThrottle

IP = "192.0.2.1"


def test_address_tag_is_stable_short_and_case_blind() -> None:
    assert address_tag(" Alice@Example.org") == address_tag("alice@example.org")
    assert len(address_tag("alice@example.org")) == 12
    assert "alice" not in address_tag("alice@example.org")


async def test_outcomes(app: Starlette, throttle: RecordingThrottle) -> None:
    context: WebContext = app.state.cryptmail_web

    async def fails() -> None:
        raise AuthenticationFailed("wrong password")

    async def breaks() -> None:
        raise StoreUnavailable("database gone")

    async def works() -> str:
        return "ok"

    with pytest.raises(AuthenticationFailed):
        await throttled(context, "a@example.org", IP, "test", fails)
    assert throttle.debt("a@example.org", "198.51.100.1") == pytest.approx(1, abs=0.1)
    with pytest.raises(StoreUnavailable):  # not a wrong credential: not counted
        await throttled(context, "b@example.org", "198.51.100.2", "test", breaks)
    assert throttle.debt("b@example.org", "198.51.100.2") == 0
    assert await throttled(context, "a@example.org", IP, "test", works) == "ok"
    # The success costs nothing and does not wipe the earlier failure (it used to).
    assert throttle.debt("a@example.org", "198.51.100.1") == pytest.approx(1, abs=0.1)
    assert [w[0] for w in throttle.waits] == ["a@example.org", "b@example.org", "a@example.org"]


async def test_an_empty_bucket_refuses_before_the_attempt_runs(
    app: Starlette, throttle: RecordingThrottle
) -> None:
    from cryptmail.errors import TooManyAttempts

    context: WebContext = app.state.cryptmail_web
    ran = 0

    async def fails() -> None:
        nonlocal ran
        ran += 1
        raise AuthenticationFailed("wrong password")

    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            await throttled(context, "a@example.org", IP, "test", fails)
    with pytest.raises(TooManyAttempts):
        await throttled(context, "a@example.org", IP, "test", fails)
    assert ran == 5

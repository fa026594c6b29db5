"""Runners in pytest: a missing program fails or skips, and factories stop what they started."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, ParamSpec, Protocol, TypeVar

import pytest

from ._errors import BinaryMissing

ALLOW_SKIP_ENV = "CRYPTMAIL_ALLOW_SKIP"


class Runner(Protocol):
    """What the fixtures need of a runner."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


_R = TypeVar("_R", bound=Runner)
_P = ParamSpec("_P")


def unavailable(exc: BinaryMissing) -> NoReturn:
    """Fail a test whose server program is missing, or skip it if CRYPTMAIL_ALLOW_SKIP=1."""
    if os.environ.get(ALLOW_SKIP_ENV) == "1":
        pytest.skip(str(exc))
    pytest.fail(f"{exc} (or set {ALLOW_SKIP_ENV}=1 to skip such tests)", pytrace=False)


def start_or_skip(server: Runner) -> float:
    """Start ``server``; return the seconds it took.

    A missing program goes to :func:`unavailable`; any other start failure is raised as it is.
    """
    started = time.monotonic()
    try:
        server.start()
    except BinaryMissing as exc:
        missing = exc
    else:
        return time.monotonic() - started
    unavailable(missing)  # outside the except block, so the report shows no traceback chain


@contextmanager
def started_instances(
    make: Callable[_P, _R],
    *,
    start: Callable[[_R], object] = start_or_skip,
    before_stop: Callable[[_R], None] | None = None,
) -> Iterator[Callable[_P, _R]]:
    """Yield a factory that builds a runner with ``make`` and starts it with ``start``.

    At exit every instance it started is stopped, in start order; ``before_stop``,
    if given, sees each one just before (to print its log if the test failed, say).
    """
    started: list[_R] = []

    def build_and_start(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        instance = make(*args, **kwargs)
        start(instance)
        started.append(instance)
        return instance

    try:
        yield build_and_start
    finally:
        for instance in started:
            if before_stop is not None:
                before_stop(instance)
            instance.stop()

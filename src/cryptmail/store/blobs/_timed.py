"""`timed`: each blob backend call counted in the metrics, by operation, with its latency
and whether it failed (any exception, a missing blob too: the index names it)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from cryptmail.metrics import current as current_metrics

P = ParamSpec("P")
R = TypeVar("R")


Method = Callable[P, Coroutine[Any, Any, R]]


def timed(operation: str) -> Callable[[Method[P, R]], Method[P, R]]:
    """Decorate an async backend method as one `operation` ("read", "write", ...)."""

    def decorate(func: Method[P, R]) -> Method[P, R]:
        @functools.wraps(func)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.monotonic()
            result = "error"
            try:
                value = await func(*args, **kwargs)
                result = "ok"
                return value
            finally:
                current_metrics().blob_operation(operation, result, time.monotonic() - started)

        return run

    return decorate

"""Every IMAP test: the raw clients it left open are closed when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .raw_client import close_left_open


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_left_open()

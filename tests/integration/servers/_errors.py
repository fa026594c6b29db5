"""Errors raised by the test server runners."""

from __future__ import annotations


class ServerStartError(RuntimeError):
    """A test server did not come up; the message says what happened and what to try."""


class BinaryMissing(ServerStartError):
    """A server's program is not installed on this machine.

    The integration fixtures turn this, and only this, into a skip when
    ``CRYPTMAIL_ALLOW_SKIP=1``; every other start failure fails the test.
    """

"""The one shape every network listener of `serve` has.

LMTP (its worker pool), IMAP and the web pages implement it, and so will any listener
added later (SASL, ManageSieve, POP3): the supervisor starts them all, waits until one
ends or a signal comes, then stops them all with one grace period.
"""

from __future__ import annotations

from typing import Protocol


class Listener(Protocol):
    """A service on one address that `serve` runs."""

    @property
    def name(self) -> str:
        """What the log calls it, e.g. ``IMAP on 127.0.0.1:143``."""

    async def start(self) -> None:
        """Bind and begin accepting. Raises ConfigError or OSError when it cannot."""

    async def wait_closed(self) -> None:
        """Return once the listener has stopped, after `stop` or on its own; raises the
        error that stopped it, if any."""

    async def stop(self, grace_s: float) -> None:
        """Accept nothing new, give the work in flight up to `grace_s` seconds to finish
        and answer, then close what is left."""

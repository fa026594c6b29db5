"""The [sieve] settings the interpreter runs with: a module of its own, so a delivery
worker makes them at its start without loading the interpreter (it loads that with
the first script it meets)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SieveSettings:
    """The [sieve] configuration the interpreter needs."""

    max_actions: int = 32
    max_redirects: int = 4
    recipient_delimiter: str = "+"
    own_addresses: tuple[str, ...] = ()

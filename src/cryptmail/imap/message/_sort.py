"""SORT (RFC 5256 section 3, RFC 5957 DISPLAYFROM / DISPLAYTO) over sort keys.

Messages that compare equal under every criterion keep mailbox order, REVERSE or not
(as RFC 5256 says and Dovecot does): each criterion is one stable sort, applied from
the last to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from cryptmail.imap.message._sortkeys import SortKeys

__all__ = ["SORT_CRITERIA", "SortItem", "sort_messages"]

SORT_CRITERIA: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


class SortItem(NamedTuple):
    """One message to sort: the number to answer with, its position, its keys."""

    number: int
    sequence: int
    arrival: float
    keys: SortKeys

    @property
    def sent(self) -> float:
        """The sent date; the internal date where the Date: field is missing or bad."""
        date = self.keys.date
        return self.arrival if date is None else date


_KEYS: Final[dict[str, Callable[[SortItem], object]]] = {
    "ARRIVAL": lambda item: item.arrival,
    "CC": lambda item: item.keys.cc,
    "DATE": lambda item: item.sent,
    "FROM": lambda item: item.keys.from_,
    "SIZE": lambda item: item.keys.size,
    "SUBJECT": lambda item: item.keys.subject,
    "TO": lambda item: item.keys.to,
    "DISPLAYFROM": lambda item: item.keys.display_from,
    "DISPLAYTO": lambda item: item.keys.display_to,
}


def sort_messages(
    items: Sequence[SortItem], criteria: Sequence[tuple[str, bool]]
) -> list[SortItem]:
    """``items`` in the order the criteria ((name, reverse), most significant first) give."""
    ordered = sorted(items, key=lambda item: item.sequence)
    for name, reverse in reversed(criteria):
        ordered.sort(key=_KEYS[name], reverse=reverse)  # type: ignore[arg-type]
    return ordered

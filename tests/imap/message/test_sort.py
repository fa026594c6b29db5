"""SORT ordering: criteria, REVERSE, ties in mailbox order, sent-date fallback."""

from __future__ import annotations

from cryptmail.imap.message._sort import SortItem, sort_messages
from cryptmail.imap.message._sortkeys import SortKeys


def item(seq: int, *, subject: str = "", date: float | None = None, arrival: float = 0,
         size: int = 0, from_: str = "") -> SortItem:  # fmt: skip
    keys = SortKeys(date, subject, False, from_, "", "", from_, "", None, (), size)
    return SortItem(seq * 10, seq, arrival, keys)


def numbers(items: list[SortItem]) -> list[int]:
    return [i.number for i in items]


def test_criteria_reverse_and_ties() -> None:
    items = [
        item(1, subject="B", size=5), item(2, subject="A", size=5),
        item(3, subject="B", size=1), item(4, subject="A", size=9),
    ]  # fmt: skip
    assert numbers(sort_messages(items, [("SUBJECT", False)])) == [20, 40, 10, 30]
    assert numbers(sort_messages(items, [("SUBJECT", True)])) == [10, 30, 20, 40]
    assert numbers(sort_messages(items, [("SUBJECT", False), ("SIZE", True)])) == [40, 20, 10, 30]
    # Equal under every criterion: mailbox order, REVERSE or not.
    assert numbers(sort_messages(items, [("SIZE", True)])) == [40, 10, 20, 30]
    assert numbers(sort_messages(list(reversed(items)), [("FROM", False)])) == [10, 20, 30, 40]


def test_date_falls_back_to_arrival() -> None:
    items = [item(1, date=300), item(2, date=None, arrival=200), item(3, date=100)]
    assert numbers(sort_messages(items, [("DATE", False)])) == [30, 20, 10]
    assert numbers(sort_messages(items, [("ARRIVAL", False)])) == [10, 30, 20]

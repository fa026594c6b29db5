"""The ESEARCH writer shared by SEARCH and SORT, and what SAVE keeps (RFC 5182 2.4)."""

from __future__ import annotations

import pytest

from cryptmail.imap.server.commands._esearch import esearch_line, saved_numbers


def test_search_answers() -> None:
    numbers = [1, 2, 3, 7, 9]
    assert esearch_line("t", numbers, ()) == b'* ESEARCH (TAG "t") ALL 1:3,7,9\r\n'
    assert esearch_line("t", numbers, ("COUNT", "MAX", "MIN"), uid=True, modseq=5) == (
        b'* ESEARCH (TAG "t") UID MIN 1 MAX 9 COUNT 5 MODSEQ 5\r\n'
    )
    assert esearch_line("t", numbers, ("SAVE",)) == b""  # SAVE alone: no ESEARCH at all
    assert esearch_line("t", numbers, ("UPDATE",)) == b'* ESEARCH (TAG "t")\r\n'
    assert esearch_line("t", [], ("MIN", "ALL", "COUNT")) == b'* ESEARCH (TAG "t") COUNT 0\r\n'


def test_partial() -> None:
    numbers = [9, 2, 3, 7, 1]  # ascending for SEARCH whatever the order given
    assert esearch_line("t", numbers, (), partial=(2, 4)) == (
        b'* ESEARCH (TAG "t") PARTIAL (2:4 2:3,7)\r\n'
    )
    assert esearch_line("t", numbers, ("COUNT",), partial=(6, 9)) == (
        b'* ESEARCH (TAG "t") PARTIAL (6:9 NIL) COUNT 5\r\n'
    )
    # SORT: positions in the sort order, numbers kept in it; MIN/MAX first and last.
    assert esearch_line("t", numbers, ("MIN", "MAX"), partial=(1, 3), ordered=True) == (
        b'* ESEARCH (TAG "t") MIN 9 MAX 1 PARTIAL (1:3 9,2:3)\r\n'
    )


@pytest.mark.parametrize(
    ("returns", "kept"),
    [
        (("SAVE",), [2, 5, 9]), (("SAVE", "MIN"), [2]), (("SAVE", "MAX"), [9]),
        (("MAX", "SAVE", "MIN"), [2, 9]), (("SAVE", "MIN", "ALL"), [2, 5, 9]),
        (("SAVE", "MAX", "COUNT"), [2, 5, 9]),
    ],
)  # fmt: skip
def test_saved_numbers(returns: tuple[str, ...], kept: list[int]) -> None:
    assert saved_numbers(returns, [2, 5, 9]) == kept
    assert saved_numbers(returns, []) == []

"""SORT (RFC 5256, with RFC 5267 ESORT's RETURN and RFC 5957 DISPLAY keys) and THREAD.

``SORT [RETURN (options)] (criteria) charset search-program`` and
``THREAD algorithm charset search-program``. The charset is required; RFC 5256 asks
for US-ASCII and UTF-8, and any other is answered NO [BADCHARSET].
"""

from __future__ import annotations

from typing import Final

from cryptmail.errors import UnknownCharset
from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._lexer import Cursor
from cryptmail.imap.wire._parser_return import ReturnOptions, parse_return_options
from cryptmail.imap.wire._parser_search import SUPPORTED_CHARSETS, SearchParser

__all__ = ["SORT_KEYS", "THREAD_ALGORITHMS", "parse_sort", "parse_thread"]

SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS: Final = ("ORDEREDSUBJECT", "REFERENCES")
_MAX_CRITERIA: Final = 32


def _charset(cur: Cursor, tag: str) -> str:
    cur.sp()
    name = cur.astring().decode("ascii", "replace").upper()
    if name not in SUPPORTED_CHARSETS:
        raise UnknownCharset("Unknown charset", tag)  # the session adds [BADCHARSET (...)]
    return name


def _returns(cur: Cursor) -> ReturnOptions:
    options = parse_return_options(cur)
    if "SAVE" in options.names:
        raise cur.fail("SORT does not take the SAVE return option")
    cur.sp()
    return options


def parse_sort(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    cur.sp()
    returns = None
    partial = None
    if cur.lookahead(7).upper() == b"RETURN ":
        options = _returns(cur)
        returns, partial = options.names, options.partial
    cur.expect_byte(b"(", "'('")
    criteria: list[tuple[str, bool]] = []
    reverse = False
    while True:
        word = cur.atom("a sort criterion").upper()
        if word == "REVERSE" and not reverse:
            reverse = True
            cur.sp()
            continue
        if word not in SORT_KEYS:
            raise cur.fail("Unknown sort criterion")
        criteria.append((word, reverse))
        reverse = False
        if len(criteria) > _MAX_CRITERIA:
            raise cur.fail("Too many sort criteria")
        if cur.skip_byte(b")"):
            break
        cur.sp()
    charset = _charset(cur, tag)
    cur.sp()
    program = SearchParser(cur, "utf-8").key_list_after_space()
    return rq.Sort(tag, tuple(criteria), program, charset, uid, returns, partial)


def parse_thread(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    cur.sp()
    algorithm = cur.atom("a threading algorithm").upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise cur.fail("Unknown threading algorithm")
    charset = _charset(cur, tag)
    cur.sp()
    program = SearchParser(cur, "utf-8").key_list_after_space()
    return rq.Thread(tag, algorithm, program, charset, uid)

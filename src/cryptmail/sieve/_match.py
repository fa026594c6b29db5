"""Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric) and match types
(:is, :contains, :matches, :regex, relational :count and :value), with the match
variables that :matches and :regex set (RFC 5229 3.2)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DIGITS = re.compile(r"^[0-9]+")
_RELATIONS: dict[str, Callable[[int], bool]] = {
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
}


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Matcher:
    """One test's comparator and match type; `match` answers one value against keys."""

    comparator: str = "i;ascii-casemap"
    match_type: str = ":is"
    relation: str = "eq"

    def fold(self, text: str) -> str:
        return ascii_lower(text) if self.comparator == "i;ascii-casemap" else text

    def match(self, value: str, key: str) -> tuple[bool, list[str] | None]:
        """Whether `value` matches `key`, and the match variables it sets (or None)."""
        kind = self.match_type
        if self.comparator == "i;ascii-numeric":
            return self._numeric(value, key), None
        if kind == ":is":
            return self.fold(value) == self.fold(key), None
        if kind == ":contains":
            return self.fold(key) in self.fold(value), None
        if kind == ":matches":
            found = _wildcard(key, self.comparator == "i;ascii-casemap").fullmatch(value)
            if found is None:
                return False, None
            return True, [value, *(g or "" for g in found.groups())]
        if kind == ":regex":
            found = _regex(key, self.comparator == "i;ascii-casemap").search(value)
            if found is None:
                return False, None
            return True, [found.group(0), *(g or "" for g in found.groups())]
        if kind == ":value":
            return _RELATIONS[self.relation](_order(self.fold(value), self.fold(key))), None
        raise ValueError(f"unknown match type {kind}")

    def _numeric(self, value: str, key: str) -> bool:
        ordering = _order_numeric(value, key)
        if self.match_type == ":value":
            return _RELATIONS[self.relation](ordering)
        if self.match_type == ":is":
            return ordering == 0
        # RFC 4790 9.1.1: i;ascii-numeric has equality and ordering, no substring.
        return False

    def count(self, number: int, key: str) -> bool:
        """Relational :count: the number of values against one key."""
        if self.comparator == "i;ascii-numeric":
            return _RELATIONS[self.relation](_order_numeric(str(number), key))
        return _RELATIONS[self.relation](_order(str(number), self.fold(key)))


def _order(left: str, right: str) -> int:
    return (left > right) - (left < right)


def _number(text: str) -> int | None:
    found = _DIGITS.match(text)
    return int(found.group(0)) if found else None  # None: positive infinity


def _order_numeric(left: str, right: str) -> int:
    a, b = _number(left), _number(right)
    if a is None or b is None:
        return (a is None) - (b is None)
    return (a > b) - (a < b)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, fold: bool) -> re.Pattern[str]:
    # "*" and "?" capture (greedily, RFC 5229 3.2); "\" quotes the next character.
    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append("(.*)")
        elif char == "?":
            out.append("(.)")
        else:
            out.append(re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if fold else 0)
    return re.compile("".join(out), flags)


@lru_cache(maxsize=1024)
def _regex(pattern: str, fold: bool) -> re.Pattern[str]:
    flags = re.IGNORECASE | re.ASCII if fold else 0
    return re.compile(pattern, flags)

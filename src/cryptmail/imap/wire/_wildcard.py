"""LIST and LSUB wildcards (RFC 3501 6.3.8) matched in O(len(name) * len(pattern)).

`*` matches anything, the hierarchy delimiter included; `%` matches anything but the
delimiter. A regex built from such a pattern backtracks exponentially on names that
almost match ("********x" against 200 `a`s), so one client could stall the event loop
for every other; this walks all pattern positions at once instead (an NFA simulation).
"""

from __future__ import annotations

from typing import Final

_LITERAL: Final = 0
_STAR: Final = 1
_PERCENT: Final = 2


class ListPattern:
    """A reference and mailbox pattern joined, ready to match mailbox names.

    The leading "INBOX" of a pattern that names INBOX (alone or as a parent) matches
    case-insensitively, as INBOX is (RFC 3501 5.1).
    """

    def __init__(self, pattern: str, delimiter: str) -> None:
        self._delimiter = delimiter
        inbox = pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] == delimiter)
        tokens: list[tuple[int, str, bool]] = []
        for index, char in enumerate(pattern):
            if char == "*":
                tokens.append((_STAR, "", False))
            elif char == "%":
                tokens.append((_PERCENT, "", False))
            else:
                folded = inbox and index < 5
                tokens.append((_LITERAL, char.upper() if folded else char, folded))
        self._tokens = tokens
        # skip[p]: the positions reachable from p by letting wildcards match nothing.
        self._skip: list[tuple[int, ...]] = []
        for start in range(len(tokens) + 1):
            reach = [start]
            while reach[-1] < len(tokens) and tokens[reach[-1]][0] != _LITERAL:
                reach.append(reach[-1] + 1)
            self._skip.append(tuple(reach))

    def fullmatch(self, name: str) -> bool:
        tokens, skip, end = self._tokens, self._skip, len(self._tokens)
        states = set(skip[0])
        for char in name:
            upper = char.upper() if char.isascii() else char
            following: set[int] = set()
            for position in states:
                if position == end:
                    continue
                kind, literal, folded = tokens[position]
                if kind == _STAR or (kind == _PERCENT and char != self._delimiter):
                    following.update(skip[position])
                elif kind == _LITERAL and literal == (upper if folded else char):
                    following.update(skip[position + 1])
            if not following:
                return False
            states = following
        return end in states

"""Words of folded text: the one tokeniser the index and its queries share.

A token is a single CJK character (ideograph, kana, hangul syllable) or a maximal run
of other word characters (``\\w`` plus combining marks, so an NFKD-decomposed accent
stays inside its word). Tokens depend only on the class of each character, so the
tokens of any piece of a text that do not touch the piece's ends are tokens of the
whole text; that is what lets a query turn a substring into word constraints
(`needle_terms`) without ever missing a match.

The text given here is already folded (``fold_text``: NFKD + casefold) by the caller,
exactly as the SEARCH matcher folds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_CJK: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_MARKS: Final = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_TOKEN: Final = re.compile(rf"[{_CJK}]|(?:[^\W{_CJK}]|[{_MARKS}])+")
_RUN_CHAR: Final = re.compile(rf"(?:[^\W{_CJK}]|[{_MARKS}])")


def tokens(folded: str) -> set[str]:
    """The distinct tokens of `folded`."""
    return set(_TOKEN.findall(folded))


class TokenStream:
    """Tokens of a text given in chunks, as if the chunks were one string: a word cut
    by a chunk border is carried to the next chunk."""

    __slots__ = ("_carry", "found")

    def __init__(self) -> None:
        self._carry = ""
        self.found: set[str] = set()

    def feed(self, folded: str) -> None:
        text = self._carry + folded
        if not text:
            return
        self._carry = ""
        if _RUN_CHAR.match(text[-1]):  # the text may end inside a word: carry it
            last = None
            for match in _TOKEN.finditer(text):
                last = match
            if last is not None and last.end() == len(text):
                self._carry = last.group(0)
                text = text[: last.start()]
        self.found.update(_TOKEN.findall(text))

    def finish(self) -> set[str]:
        if self._carry:
            self.found.add(self._carry)
            self._carry = ""
        return self.found


@dataclass(frozen=True, slots=True)
class NeedleTerm:
    """One token of a search string and how it must sit in a stored word: `left`
    means the word starts with it, `right` that it ends with it (both: the word is it)."""

    token: str
    left: bool
    right: bool


def needle_terms(folded: str) -> tuple[tuple[NeedleTerm, ...], bool]:
    """The word constraints a text containing `folded` must meet, and whether any
    stored word containing the single token proves a match (the needle is one token).

    A token inside the needle is bounded by non-token characters (or a CJK character)
    in the needle, so the text's word is exactly it; one at the needle's start may be
    the end of a longer word, one at its end the start of one.
    """
    found = []
    for match in _TOKEN.finditer(folded):
        token = match.group(0)
        single = len(token) == 1 and not _RUN_CHAR.match(token)
        found.append(
            NeedleTerm(token, single or match.start() > 0, single or match.end() < len(folded))
        )
    whole = len(found) == 1 and found[0].token == folded
    return tuple(found), whole

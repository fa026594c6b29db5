"""The i;unicode-casemap collation (RFC 5051) SORT compares strings in.

Each character mapped to its (simple) titlecase, then the whole string decomposed
(NFKD); the results compare by code point, which is the order of their UTF-8 octets.
"""

from __future__ import annotations

import unicodedata

__all__ = ["unicode_casemap"]


def _titlecase(char: str) -> str:
    # Python knows only the full titlecase mapping; where that is one character it is
    # also the simple one RFC 5051 uses, and where it is more (German sharp s) the
    # simple mapping is the character itself.
    mapped = char.title()
    return mapped if len(mapped) == 1 else char


def unicode_casemap(text: str) -> str:
    """The i;unicode-casemap (RFC 5051) comparison form of ``text``."""
    if text.isascii():
        return text.upper()  # ASCII titlecase is upper case; NFKD changes nothing
    return unicodedata.normalize("NFKD", "".join(_titlecase(c) for c in text))

"""Which documents of a segment can hold a search string, and which surely do.

A search string (folded) becomes word constraints (`needle_terms`): a word the text
must hold exactly, one it must hold as a prefix or a suffix, or any word containing the
token. Candidates are the documents meeting every constraint; the rest cannot match and
are skipped. When the string is a single token, every candidate matches (the stored word
is a substring of the text the matcher reads), so the index answers without reading
the message. A constraint matching too many distinct words gives up on narrowing:
every document stays a candidate and none is proven.

Fields: BODY holds the words of SEARCH BODY's text; TEXT's text is the headers of every
part interleaved with the bodies, so its words are BODY's plus TEXT_EXTRA (words of
TEXT not in BODY) minus BODY_ONLY (words of BODY not in TEXT: a word joined across two
parts' bodies). The header fields hold the words of each value as the matcher compares
it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptmail.store.fulltext._segment import FieldWords, Segment
from cryptmail.store.fulltext._tokens import NeedleTerm

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    # numpy is imported where it runs: an idle server never searches (7 MB).
    Mask = npt.NDArray[np.bool_]

BODY: Final = 1
TEXT_EXTRA: Final = 2
BODY_ONLY: Final = 3
HEADER_FIELDS: Final = {"subject": 4, "from": 5, "to": 6, "cc": 7, "bcc": 8}
MAX_EXPANSION: Final = 20000
"""Words one constraint may match before the index stops narrowing for it."""


@dataclass(frozen=True, slots=True)
class Needle:
    """A folded search string turned into constraints; `kind` is "body", "text" or a
    header field name from HEADER_FIELDS."""

    kind: str
    terms: tuple[NeedleTerm, ...]
    whole: bool


def _matching(fw: FieldWords, term: NeedleTerm) -> list[int] | None:
    found: list[int]
    words, token = fw.words, term.token
    if term.left and term.right:
        exact = fw.index_of(token)
        return [] if exact is None else [exact]
    if term.left:
        low = bisect.bisect_left(words, token)
        high = bisect.bisect_left(words, token + "\U0010ffff", low)
        found = list(range(low, high))
        return found if len(found) <= MAX_EXPANSION else None
    # A word never holds "\n", so "token\n" in the joined list is a word ending in it.
    return fw.find(token + "\n" if term.right else token, MAX_EXPANSION)


def _docs(segment: Segment, field_id: int, term: NeedleTerm) -> Mask | None:
    """Docs holding a word of `field_id` that meets `term`; None: too many words."""
    import numpy as np

    mask = np.zeros(segment.size, dtype=np.bool_)
    fw = segment.fields.get(field_id)
    if fw is None:
        return mask
    found = _matching(fw, term)
    if found is None:
        return None
    mask[fw.docs_of(found)] = True
    return mask


def match_segment(segment: Segment, needle: Needle) -> tuple[Mask, Mask]:
    """(candidates, proven) over the segment's doc numbers; proven implies candidate."""
    import numpy as np

    every = np.ones(segment.size, dtype=np.bool_)
    nothing = np.zeros(segment.size, dtype=np.bool_)
    if not needle.terms:
        return every, nothing
    if needle.kind == "body":
        fields = [BODY]
    elif needle.kind == "text":
        fields = [BODY, TEXT_EXTRA]
    else:
        fields = [HEADER_FIELDS[needle.kind]]
    candidates = every.copy()
    narrowed = False
    per_field: dict[int, Mask] = {}
    for term in needle.terms:
        union = nothing.copy()
        for field_id in fields:
            docs = _docs(segment, field_id, term)
            if docs is None:
                break
            per_field[field_id] = docs
            union |= docs
        else:
            candidates &= union
            narrowed = True
    if not narrowed:
        return every, nothing
    if not needle.whole or len(per_field) != len(fields):
        return candidates, nothing
    if needle.kind != "text":
        return candidates, candidates.copy()
    # A BODY word proves a TEXT match unless the doc also lists a matching word as
    # BODY_ONLY (then that word may be the one that is not in TEXT's text).
    body_only = _docs(segment, BODY_ONLY, needle.terms[0])
    if body_only is None:
        return candidates, per_field[TEXT_EXTRA]
    return candidates, per_field[TEXT_EXTRA] | (per_field[BODY] & ~body_only)

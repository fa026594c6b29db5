"""The tokeniser: words of folded text, streamed, and a search string's constraints."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from cryptmail.store.fulltext import NeedleTerm, TokenStream, needle_terms, tokens


def test_words_and_cjk_characters() -> None:
    assert tokens("hello, world_2 東京 ok") == {"hello", "world_2", "東", "京", "ok"}


def test_an_nfkd_accent_stays_in_its_word() -> None:
    folded = unicodedata.normalize("NFKD", "Café Straße").casefold()
    assert tokens(folded) == {unicodedata.normalize("NFKD", "café"), "strasse"}


def test_stream_joins_a_word_cut_by_a_chunk_border() -> None:
    stream = TokenStream()
    for chunk in ["hel", "lo wo", "", "rld", " x"]:
        stream.feed(chunk)
    assert stream.finish() == {"hello", "world", "x"}


@given(st.text(alphabet="ab é.東\n-", max_size=60), st.lists(st.integers(0, 60), max_size=5))
def test_stream_equals_whole_text(text: str, cuts: list[int]) -> None:
    stream = TokenStream()
    last = 0
    for cut in sorted(cuts):
        stream.feed(text[last:cut])
        last = max(last, cut)
    stream.feed(text[last:])
    assert stream.finish() == tokens(text)


def test_needle_constraints() -> None:
    terms, whole = needle_terms("ello wor")
    assert terms == (NeedleTerm("ello", False, True), NeedleTerm("wor", True, False))
    assert not whole
    assert needle_terms("ell") == ((NeedleTerm("ell", False, False),), True)
    assert needle_terms("@ell.") == ((NeedleTerm("ell", True, True),), False)
    assert needle_terms("東京")[0] == (NeedleTerm("東", True, True), NeedleTerm("京", True, True))
    assert needle_terms("--") == ((), False)

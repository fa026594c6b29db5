"""LIST wildcards: the linear matcher agrees with the regex it replaced."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.imap.wire._wildcard import ListPattern


def _regex(full: str) -> re.Pattern[str]:
    # The matcher this module replaced (exponential on some patterns), as the reference.
    out = []
    for char in full:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(char))
    body = "".join(out)
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] == "/"):
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body, re.DOTALL)


_NAMES = st.text(alphabet="abIiNnBbOoXx/.", max_size=12)
_PATTERNS = st.one_of(
    st.text(alphabet="abInX/*%", max_size=8),
    st.builds(
        lambda case, rest: case + rest,
        st.sampled_from(["INBOX", "inbox", "InBoX"]),
        st.text(alphabet="ab/*%", max_size=6),
    ),
)


@given(pattern=_PATTERNS, name=_NAMES)
def test_matches_like_the_regex(pattern: str, name: str) -> None:
    assert ListPattern(pattern, "/").fullmatch(name) == bool(_regex(pattern).fullmatch(name))


@given(pattern=_PATTERNS, name=_NAMES)
def test_names_built_from_the_pattern_match(pattern: str, name: str) -> None:
    # Wildcards replaced by pieces of `name` (no delimiter for %) give a matching name.
    piece = name.replace("/", "")
    built = pattern.replace("*", name).replace("%", piece)
    assert ListPattern(pattern, "/").fullmatch(built)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("a/%", "a/b", True),
        ("inbox", "INBOX", True),
        ("inbox/%", "INBOX/x", True),
        ("inboxy", "INBOXY", False),
        ("", "", True),
        ("********x", "a" * 200, False),
        ("%%%%%%%%%%%%%%%%%%%%x", "a" * 1000, False),
    ],
)
def test_examples(pattern: str, name: str, expected: bool) -> None:
    assert ListPattern(pattern, "/").fullmatch(name) is expected

"""The server's URLAUTH pieces without a connection: canonical URLs, sealed plans and
token URLs (sessions and access identifiers: tests/imap/server/commands/test_urlauth.py)."""

from __future__ import annotations

import pytest

from cryptmail.imap.message._partmap import SectionPlan
from cryptmail.imap.server._urlauth import (
    canonical_url,
    decode_plan,
    encode_plan,
    parse_token_url,
)
from cryptmail.imap.wire._imapurl import parse_imap_url

BASE = "imap://alice%40example.org@host/INBOX/;UID=1"
TOKEN = "ab" * 32


def _canonical(url: str) -> tuple[str, ...]:
    return canonical_url(parse_imap_url(url, urlauth=True))


def test_canonical_form_names_every_part_but_host_and_token() -> None:
    url = BASE + "/;SECTION=1;URLAUTH=authuser"
    assert _canonical(url) == _canonical(url.replace("@host/", "@other:143/"))
    assert _canonical(url) == _canonical(url + ":internal:" + TOKEN)
    assert _canonical(url) == _canonical(url.replace("alice%40example.org", "ALICE@example.org"))
    changed = [
        url.replace("INBOX", "Sent"),
        url.replace("UID=1", "UID=2"),
        url.replace("SECTION=1", "SECTION=1.MIME"),
        url.replace("/;SECTION=1", "/;SECTION=1/;PARTIAL=0.5"),
        url.replace(";URLAUTH", ";EXPIRE=2030-01-01T00:00:00Z;URLAUTH"),
        url.replace("authuser", "user+bob"),
        url.replace("/INBOX/", "/INBOX;UIDVALIDITY=7/"),
    ]
    assert len({_canonical(u) for u in changed} | {_canonical(url)}) == len(changed) + 1
    with pytest.raises(ValueError, match="URLAUTH"):
        canonical_url(parse_imap_url(BASE))


def test_plans_round_trip_and_garbage_is_none() -> None:
    plans = [
        (SectionPlan(True, 10, 20, 22, 22, 0), None),
        (SectionPlan(True, 0, 100, 100, None, 0, ("SUBJECT", "TO"), True, True), (0, 5)),
        (SectionPlan(False), (3, 2**32)),
    ]
    for plan, partial in plans:
        assert decode_plan(encode_plan(plan, partial)) == (plan, partial)
    for garbage in (b"", b"{}", b"[1, 2]", b"[[1], null]", b"\xff", b'[["x",1,2,3,4,5,6,7,8],0]'):
        assert decode_plan(garbage) is None


def test_token_urls() -> None:
    url = BASE + ";URLAUTH=authuser:INTERNAL:" + TOKEN
    parsed = parse_token_url(url)
    assert parsed is not None and parsed[1] == bytes.fromhex(TOKEN)
    for bad in (
        BASE + ";URLAUTH=authuser",
        BASE + ";URLAUTH=authuser:XSAMPLE:" + TOKEN,
        BASE + ";URLAUTH=authuser:internal:" + TOKEN[:-2],
        BASE + ";URLAUTH=authuser:internal:" + TOKEN + "00",
        "garbage",
        "",
    ):
        assert parse_token_url(bad) is None

"""The sort field record delivery makes from the spooled header: the same bytes the
IMAP analysis keeps for the message (so keys from a delivery entry and the slow path
agree), for odd headers, with the spool in memory or on disk; none past MAX_SORT_HEADER."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptmail.delivery._sort_record import sort_record
from cryptmail.imap.message._analysis import analyze_message
from cryptmail.store import MAX_SORT_HEADER, Spool

MESSAGES = [
    b"Subject: plain\r\nFrom: a@b\r\n\r\nbody: x\r\n",
    b"Subject: folded\r\n  more\r\n\tand more\r\nFrom: a@b\r\n\r\nbody\r\n",
    b"Subject : space before colon\r\n\r\nb\r\n",
    b"Subject\t: tab before colon\r\n\r\n",
    b"SUBJECT: upper\r\nsubject: second\r\n\r\nb\r\n",
    b"Subject:no space\n\nbare lf\n",
    b"Subject:   \t lots of ws  \r\n\r\nb\r\n",
    b"Subject: x\r\nbroken line without colon\r\nFrom: a@b\r\n\r\nb",
    b"Subject: no body at all\r\n",
    b'Subject: \xc3\xa9 8bit \xff\r\nTo: "N" <n@x>\r\n\r\n',
    b"Subject: nul\x00inside\r\n\r\n",
    b"From: a@b\r\nSubject: cr\ronly\r\n\r\n",
    b" leading continuation\r\nSubject: x\r\n\r\n",
    b"Subject: x\r\n\r\nFrom: body@fake\r\nSubject: not the header\r\n",
    b"\r\nSubject: after an empty line: the body\r\n",
    b"\nSubject: after a bare empty line\n",
    b"References: <a@b>\r\n <c@d>\r\nIn-Reply-To: <e@f>\r\nMessage-ID: <g@h>\r\n\r\n",
    b"Date: Mon, 7 Dec 2026 06:00:00 +0000\r\nCc: c@d, e@f\r\nTo: t@x\r\n\r\n",
    b"Subject: " + b"x" * 20_000 + b"\r\n\r\nbody",
]


async def _spool(tmp_path: Path, message: bytes, memory_limit: int) -> Spool:
    spool = Spool(tmp_path, memory_limit=memory_limit)
    for start in range(0, len(message), 1000):
        await spool.write(message[start : start + 1000])
    await spool.close()
    return spool


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
async def test_the_record_is_the_analysis_record(
    tmp_path: Path, message: bytes, on_disk: bool
) -> None:
    spool = await _spool(tmp_path, message + b"tail\r\n" * 3000, 100 if on_disk else 1 << 20)
    assert spool.on_disk is on_disk
    try:
        expected = analyze_message(message + b"tail\r\n" * 3000).sort_fields
        assert await sort_record(spool) == expected
    finally:
        spool.discard()


async def test_no_record_past_the_longest_header(tmp_path: Path) -> None:
    message = b"X-Long: " + b"y" * MAX_SORT_HEADER + b"\r\nSubject: late\r\n\r\nbody\r\n"
    for limit in (100, 4 * MAX_SORT_HEADER):
        spool = await _spool(tmp_path, message, limit)
        try:
            assert await sort_record(spool) is None
        finally:
            spool.discard()

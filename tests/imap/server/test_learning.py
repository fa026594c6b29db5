# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Spam learning on a live server: moves into Junk teach spam, out of Junk ham, through a
real command reading the decrypted message on standard input, after the MOVE answered."""

from __future__ import annotations

import hashlib
import imaplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.imap.server._learning import verdict_for

from ..server_rig import PASSWORD, USER, ImapRig, start_rig

# The fake filter: records the verdict and the SHA-256 of what it was given. It may be
# told to wait for a file first, or to fail.
FILTER = """
import hashlib, os, sys, time
verdict, record, gate = sys.argv[1:4]
data = sys.stdin.buffer.read()
while gate != "-" and not os.path.exists(gate):
    time.sleep(0.02)
if verdict == "fail":
    print("learner refused", file=sys.stderr)
    sys.exit(3)
with open(record, "a") as f:
    f.write(verdict + " " + hashlib.sha256(data).hexdigest() + "\\n")
"""

MESSAGE = b"From: spammer@example.net\r\nSubject: cheap pills\r\n\r\nbuy now\r\n"


def test_verdicts() -> None:
    assert verdict_for("inbox", "junk") == "spam"
    assert verdict_for(None, "junk") == "spam"  # a folder of the user's own
    assert verdict_for("junk", "inbox") == "ham"
    assert verdict_for("junk", None) == "ham"
    assert verdict_for("junk", "trash") is None  # deleting spam says nothing
    assert verdict_for("junk", "junk") is None
    assert verdict_for("inbox", "archive") is None


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    script = tmp_path / "filter.py"
    script.write_text(FILTER)
    record, gate = tmp_path / "learned.txt", tmp_path / "gate"
    yield from start_rig(
        tmp_path,
        **{
            "spam.learn_spam": [sys.executable, str(script), "spam", str(record), str(gate)],
            "spam.learn_ham": [sys.executable, str(script), "ham", str(record), "-"],
        },
    )


def _login(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def _learned(rig: ImapRig) -> list[str]:
    assert rig.learner is not None
    rig.run(rig.learner.join())
    record = rig.config.data_path.parent / "learned.txt"
    return record.read_text().splitlines() if record.exists() else []


def test_moves_into_and_out_of_junk_teach_the_filter(rig: ImapRig, tmp_path: Path) -> None:
    digest = hashlib.sha256(rig_message(rig)).hexdigest()
    phone, desktop = _login(rig), _login(rig)
    phone.select("INBOX")
    # The spam command waits for the gate: the MOVE must answer before it.
    assert phone.uid("MOVE", "1", "Junk")[0] == "OK"
    assert _learned_so_far(rig) == []
    (tmp_path / "gate").touch()
    assert _learned(rig) == [f"spam {digest}"]
    # The desktop takes it back out: ham. Then into Junk again, and to Trash: nothing.
    desktop.select("Junk")
    assert desktop.uid("MOVE", "1", "INBOX")[0] == "OK"
    assert _learned(rig)[-1] == f"ham {digest}"
    desktop.select("INBOX")
    assert desktop.uid("COPY", "2", "Junk")[0] == "OK"
    assert _learned(rig)[-1] == f"spam {digest}"
    desktop.select("Junk")
    assert desktop.uid("MOVE", "1", "Trash")[0] == "OK"
    assert len(_learned(rig)) == 3
    # Moves between other folders teach nothing.
    desktop.select("INBOX")
    assert desktop.uid("MOVE", "2", "Archive")[0] == "OK"
    assert len(_learned(rig)) == 3
    for imap in (phone, desktop):
        imap.logout()


def rig_message(rig: ImapRig) -> bytes:
    """Deliver MESSAGE and return its bytes as stored (with the delivery headers)."""
    rig.deliver(MESSAGE)
    imap = _login(rig)
    imap.select("INBOX", readonly=True)
    data = imap.uid("FETCH", "1", "(BODY.PEEK[])")[1][0][1]
    imap.logout()
    assert isinstance(data, bytes)
    return data


def _learned_so_far(rig: ImapRig) -> list[str]:
    time.sleep(0.3)  # long enough for a learner that did not wait to have written
    record = rig.config.data_path.parent / "learned.txt"
    return record.read_text().splitlines() if record.exists() else []


def test_a_failing_filter_is_logged_and_the_move_still_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "filter.py"
    script.write_text(FILTER)
    record = tmp_path / "learned.txt"
    for rig in start_rig(
        tmp_path,
        **{"spam.learn_spam": [sys.executable, str(script), "fail", str(record), "-"]},
    ):
        rig.deliver(MESSAGE)
        imap = _login(rig)
        imap.select("INBOX")
        assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
        assert _learned(rig) == []
        assert "exited 3 (learner refused)" in caplog.text
        imap.logout()


def test_a_full_queue_skips_messages_instead_of_waiting(tmp_path: Path) -> None:
    script = tmp_path / "filter.py"
    script.write_text(FILTER)
    record, gate = tmp_path / "learned.txt", tmp_path / "gate"
    for rig in start_rig(
        tmp_path,
        **{
            "spam.learn_spam": [sys.executable, str(script), "spam", str(record), str(gate)],
            "spam.max_running": 1,
            "spam.max_queued": 1,
        },
    ):
        for _ in range(4):
            rig.deliver(MESSAGE)
        imap = _login(rig)
        imap.select("INBOX")
        # One message at a time, each MOVE answered at once although the filter waits.
        for uid in range(1, 5):
            assert imap.uid("MOVE", str(uid), "Junk")[0] == "OK"
        assert rig.learner is not None
        assert rig.learner.dropped >= 2  # one running, one queued, the rest skipped
        gate.touch()
        assert len(_learned(rig)) == 4 - rig.learner.dropped
        imap.logout()

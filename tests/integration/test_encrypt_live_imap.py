"""`cryptmail mailbox encrypt` while an IMAP client stays connected, and what it leaves on disk.

A user with crypt = 0 gets plain mail, an IMAP session selects INBOX and sets flags, then
`mailbox encrypt` (the CLI, its own process) seals everything. The same session, never
re-selected, must see the same UIDs, flags and bytes, no EXPUNGE, and keep working. A
hard link kept to each plain blob file shows what the backend did to its bytes before the
unlink, once the grace for reads in flight was over: they were overwritten with zeros.
"""

from __future__ import annotations

import imaplib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.users import get_user, set_crypt
from imap.server_rig import ImapRig, start_rig

from .cryptmail_server import share_server_key

pytestmark = pytest.mark.integration

EMAIL = "carol@example.org"
PASSWORD_ = "carol pw %1"
MARKER = b"plain-marker-51c2"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _view(imap: imaplib.IMAP4) -> list[tuple[int, str, bytes]]:
    typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK"
    out = []
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0])[1])  # type: ignore[index]
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].decode()  # type: ignore[index]
            out.append((uid, " ".join(sorted(flags.split())), item[1]))
    return sorted(out)


def _set_crypt(rig: ImapRig) -> None:
    async def work() -> None:
        async with rig.engine.begin() as conn:
            user = await get_user(conn, EMAIL)
            await set_crypt(conn, user.id, 2)

    rig.run(work())


def test_encrypt_under_a_live_session_changes_no_uid_or_flag(rig: ImapRig, tmp_path: Path) -> None:
    rig.add_user(EMAIL, PASSWORD_, crypt=0)
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(EMAIL, PASSWORD_)  # the first login makes the key pair
    for number in range(6):
        rig.deliver(b"Subject: m%d\r\n\r\n%s %d\r\n" % (number, MARKER, number), EMAIL)
    blob_files = [p for p in (rig.config.data_path / "blobs").rglob("*") if p.is_file()]
    assert len(blob_files) == 6 and all(MARKER in p.read_bytes() for p in blob_files)
    links = tmp_path / "links"
    links.mkdir()
    for index, path in enumerate(blob_files):
        os.link(path, links / str(index))

    assert imap.select("INBOX")[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", r"(\Seen kw1)")[0] == "OK"
    assert imap.uid("STORE", "5", "+FLAGS", r"(\Flagged \Deleted)")[0] == "OK"
    before = _view(imap)
    assert [uid for uid, _, _ in before] == [1, 2, 3, 4, 5, 6]

    _set_crypt(rig)
    share_server_key(rig.config.data_path)  # the key rows were sealed in this process
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptmail",
            "--data-dir",
            str(rig.config.data_path),
            "mailbox",
            "encrypt",
            EMAIL,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    # Not a terminal: plain progress lines, ending with the whole count.
    assert "6/6" in result.stderr.decode(), result.stderr.decode()

    typ, untagged = imap.noop()
    assert typ == "OK"
    assert not any(b"EXPUNGE" in line for line in untagged if isinstance(line, bytes))
    assert _view(imap) == before
    # The session keeps working on the sealed messages.
    assert imap.uid("STORE", "3", "+FLAGS", r"(\Answered)")[0] == "OK"
    after = _view(imap)
    assert [(uid, flags) for uid, flags, _ in after][2] == (3, "\\Answered \\Recent")
    imap.logout()

    blobs = rig.config.data_path / "blobs"
    named = [p for p in blobs.glob("[0-9a-f]*/*") if p.is_file()]
    assert len(named) == 6 and not any(MARKER in p.read_bytes() for p in named)
    # The plain copies wait in tmp/ for the grace (a FETCH may still be reading one);
    # then `serve`, here the rig's store, zeroes and unlinks them.
    assert len(list((blobs / "tmp").iterdir())) == 6
    assert rig.run(rig.blobs.sweep_deleted(0)).count == 6
    on_disk = [p for p in blobs.rglob("*") if p.is_file()]
    assert len(on_disk) == 6 and not any(MARKER in p.read_bytes() for p in on_disk)
    # Every plain blob's bytes were zeroed before it was unlinked.
    for link in links.iterdir():
        data = link.read_bytes()
        assert data and data == bytes(len(data))

"""`cryptmail mailbox export`: a user's folders as a Dovecot-readable Maildir++ or mboxrd.

Maildir: Dovecot's default layout (`maildir:~/Maildir`). The root is INBOX, every other
folder `.A.B` for `A/B`, each level in modified UTF-7. Per folder: `dovecot-uidlist`
(version 3: UIDVALIDITY, next UID, each file's UID, so Dovecot keeps our UIDs),
`dovecot-keywords` (`<index> <name>`, index 0 is the letter `a`) and the messages in
`cur/`, named `<base>,S=<size>:2,<flags><keyword letters>` with the internal date as
mtime. The root gets `subscriptions`. Each message is written to `tmp/`, fsynced, then
renamed into `cur/`, and each index file is written beside itself and renamed, so a
crash leaves whole files only. A folder can name at most 26 keywords in file names;
more are reported and left out.

mbox: one mboxrd file per folder (`>From ` quoting, reversible). mbox has no place for
IMAP flags, so they are not kept there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from cryptmail.cli._progress import ProgressDisplay
from cryptmail.cli._runtime import say
from cryptmail.imap import encode_mailbox_name
from cryptmail.keys import UnlockedAccount
from cryptmail.store import DELIMITER, Mailbox, MessageRow, open_blob, stream_plaintext
from cryptmail.store.blobs import BlobStore

_FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_MAX_KEYWORDS = 26


def maildir_folder(name: str, role: str | None) -> str:
    """The Maildir++ directory for a folder: '' for INBOX, `.A.B` for `A/B`."""
    if role == "inbox":
        return ""
    return "." + ".".join(encode_mailbox_name(part) for part in name.split(DELIMITER))


def folder_keywords(rows: list[MessageRow]) -> list[str]:
    """The folder's keywords in the order they get letters (sorted, at most 26 used)."""
    return sorted({flag for row in rows for flag in row.flags if not flag.startswith("\\")})


def maildir_info(flags: frozenset[str], keywords: list[str]) -> str:
    """The `:2,` info part: flag letters, then keyword letters (`a` is keywords[0])."""
    letters = sorted(_FLAG_LETTERS[f] for f in flags if f in _FLAG_LETTERS)
    letters += sorted(
        chr(ord("a") + index)
        for index, keyword in enumerate(keywords[:_MAX_KEYWORDS])
        if keyword in flags
    )
    return ":2," + "".join(letters)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as target:
        target.write(data)
        target.flush()
        os.fsync(target.fileno())
    tmp.replace(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mbox_quote(line: bytes) -> bytes:
    """mboxrd quoting of one whole line: `>*From ` gets one more `>`."""
    return b">" + line if line.lstrip(b">").startswith(b"From ") else line


async def _copy(
    target: BinaryIO, account: UnlockedAccount, blobs: BlobStore, row: MessageRow, mbox: bool
) -> int:
    opened = await open_blob(blobs, account, row.blob_id, expect_sealed=row.sealed)
    size = 0
    carry = b""  # mbox: a line cut between two pieces is quoted once it is whole
    async for piece in stream_plaintext(blobs, opened):
        size += len(piece)
        if not mbox:
            target.write(piece)
            continue
        *lines, carry = (carry + piece).split(b"\n")
        for line in lines:
            target.write(mbox_quote(line) + b"\n")
    if mbox and carry:
        target.write(mbox_quote(carry))
    return size


class Exporter:
    """Writes folders one by one under `out`, counting into one progress display."""

    def __init__(
        self, out: Path, account: UnlockedAccount, blobs: BlobStore, display: ProgressDisplay
    ) -> None:
        self.out = out
        self.account = account
        self.blobs = blobs
        self.display = display
        self.messages = 0
        self.bytes = 0

    def _step(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        self.display.update(self.messages, self.bytes)

    async def maildir_folder(self, box: Mailbox, rows: list[MessageRow]) -> None:
        """Write one folder; its UIDs, UIDVALIDITY, flags, keywords and dates are kept."""
        folder = self.out / maildir_folder(box.name, box.role)
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        if box.role != "inbox":
            (folder / "maildirfolder").touch()
        keywords = folder_keywords(rows)
        if len(keywords) > _MAX_KEYWORDS:
            say(
                f"folder {box.id}: {len(keywords)} keywords, Maildir file names hold 26; "
                "the rest are left out"
            )
        uidnext = max([box.uidnext, *(row.uid + 1 for row in rows)])
        lines = [f"3 V{box.uidvalidity} N{uidnext}"]
        for row in rows:
            stamp = int(row.internal_date.timestamp())
            base = f"{stamp}.M{row.uid}P{os.getpid()}V{box.uidvalidity}.cryptmail"
            tmp = folder / "tmp" / base
            with open(tmp, "wb") as target:  # noqa: ASYNC230 - a CLI run, one user
                size = await _copy(target, self.account, self.blobs, row, mbox=False)
                target.flush()
                os.fsync(target.fileno())
            name = f"{base},S={size}"
            os.utime(tmp, (stamp, stamp))
            tmp.rename(folder / "cur" / (name + maildir_info(row.flags, keywords)))
            lines.append(f"{row.uid} :{name}")
            self._step(size)
        _fsync_dir(folder / "cur")
        keyword_lines = "".join(
            f"{index} {keyword}\n" for index, keyword in enumerate(keywords[:_MAX_KEYWORDS])
        )
        _write_atomic(folder / "dovecot-keywords", keyword_lines.encode())
        _write_atomic(folder / "dovecot-uidlist", ("\n".join(lines) + "\n").encode())

    async def mbox_folder(self, box: Mailbox, rows: list[MessageRow]) -> None:
        """Write one folder as an mboxrd file (`INBOX`, or `A.B` for `A/B`)."""
        name = "INBOX" if box.role == "inbox" else box.name.replace(DELIMITER, ".")
        path = self.out / name
        tmp = path.with_name(name + ".tmp")
        with open(tmp, "wb") as target:  # noqa: ASYNC230 - a CLI run, one user
            for row in rows:
                when = time.strftime(
                    "%a %b %d %H:%M:%S %Y", time.gmtime(row.internal_date.timestamp())
                )
                target.write(f"From MAILER-DAEMON {when}\n".encode())
                size = await _copy(target, self.account, self.blobs, row, mbox=True)
                target.write(b"\n")
                self._step(size)
            target.flush()
            os.fsync(target.fileno())
        tmp.replace(path)

    def subscriptions(self, names: list[str]) -> None:
        """Dovecot's `subscriptions` file at the root: one storage name a line."""
        lines = "".join(
            ".".join(encode_mailbox_name(part) for part in name.split(DELIMITER)) + "\n"
            for name in sorted(names)
        )
        _write_atomic(self.out / "subscriptions", lines.encode())

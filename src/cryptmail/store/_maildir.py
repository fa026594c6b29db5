"""Reading a Dovecot Maildir++ tree for import: folders, files, flags and keywords.

Layout (Dovecot's default `maildir:~/Maildir`): the root is INBOX; every other folder is
a directory `.A.B` directly under the root for the IMAP folder `A/B`, each level in
modified UTF-7 (RFC 3501 §5.1.3). A message is one file in `cur/` or `new/`; its name is
`<base>[:2,<info>]`, the info letters being the flags (D F P R S T) and, for `a`-`z`,
keywords by their index in the folder's `dovecot-keywords` file. `dovecot-uidlist`
holds UIDVALIDITY and each base name's UID.

Everything here is synchronous file access: call it through `run_blocking`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptmail.crypto.dovecot import Uidlist, maildir_base_name, parse_uidlist
from cryptmail.errors import DovecotFormatError, ParseError
from cryptmail.utf7 import decode_mailbox_name

_FLAG_LETTERS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
# Names that other clients and older setups give the special folders; used only when the
# Maildir has no folder with the default name itself (so two folders never merge).
_ROLE_ALIASES = {
    "Sent Messages": "Sent",
    "Sent Items": "Sent",
    "Deleted Messages": "Trash",
    "Deleted Items": "Trash",
    "Spam": "Junk",
}


@dataclass(frozen=True)
class MaildirMessage:
    """One message file: where it is, its base name, and what its name says."""

    path: Path
    base: str
    info: str
    in_new: bool
    size: int
    mtime: float


@dataclass(frozen=True)
class MaildirFolder:
    """One folder: its name in our hierarchy ("INBOX", "Work/2026"), files, uidlist."""

    name: str
    path: Path
    uidlist: Uidlist | None
    keywords: dict[str, str]
    messages: tuple[MaildirMessage, ...]

    def uids(self) -> dict[str, int]:
        """UID by base name, from the uidlist."""
        if self.uidlist is None:
            return {}
        return {maildir_base_name(r.file_name): r.uid for r in self.uidlist.records}


def decode_utf7(text: str) -> str:
    """A folder name's modified UTF-7 to Unicode, read leniently (other programs may have
    written the directory). Raises DovecotFormatError if malformed."""
    try:
        return decode_mailbox_name(text, strict=False)
    except ParseError as exc:
        raise DovecotFormatError(
            f"a folder name is not valid modified UTF-7: {exc.reason}"
        ) from exc


def flags_from_info(info: str, keywords: dict[str, str]) -> frozenset[str]:
    """IMAP flags and keywords of a Maildir info part (`2,FRS`, `2,Sab`)."""
    if not info.startswith("2,"):
        return frozenset()
    flags: set[str] = set()
    for letter in info[2:]:
        if letter in _FLAG_LETTERS:
            flags.add(_FLAG_LETTERS[letter])
        elif "a" <= letter <= "z" and letter in keywords:
            flags.add(keywords[letter])
    return frozenset(flags)


def _read_keywords(folder: Path) -> dict[str, str]:
    """`dovecot-keywords`: lines `<index> <name>`; index 0 is letter a."""
    try:
        data = (folder / "dovecot-keywords").read_bytes()
    except FileNotFoundError:
        return {}
    keywords: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        number, _, name = line.partition(" ")
        if number.isdigit() and 0 <= int(number) < 26 and name:
            keywords[chr(ord("a") + int(number))] = name
    return keywords


def _read_uidlist(folder: Path) -> Uidlist | None:
    try:
        return parse_uidlist((folder / "dovecot-uidlist").read_bytes())
    except FileNotFoundError:
        return None


def _messages(folder: Path) -> list[MaildirMessage]:
    found: list[MaildirMessage] = []
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
                base, _, info = entry.name.partition(":")
                found.append(
                    MaildirMessage(
                        Path(entry.path), base, info, sub == "new", stat.st_size, stat.st_mtime
                    )
                )
    found.sort(key=lambda m: m.base)
    return found


def _is_folder(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _folder_name(directory: str) -> str:
    levels = directory[1:].split(".")
    if any(not level for level in levels):
        raise DovecotFormatError("a Maildir++ folder directory has an empty level")
    return "/".join(decode_utf7(level) for level in levels)


def scan_maildir(root: Path) -> list[MaildirFolder]:
    """Every folder of the Maildir at `root`, INBOX first, then by name.

    Raises DovecotFormatError (a broken uidlist or folder name), OSError.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    places: list[tuple[str, Path]] = [("INBOX", root)]
    for entry in sorted(os.listdir(root)):
        path = root / entry
        if (
            entry.startswith(".")
            and entry not in (".", "..")
            and path.is_dir()
            and _is_folder(path)
        ):
            places.append((_folder_name(entry), path))
    names = {name for name, _ in places}
    folders: list[MaildirFolder] = []
    for name, path in places:
        target = _ROLE_ALIASES.get(name)
        if target is not None and target not in names:
            name = target
            names.add(target)
        folders.append(
            MaildirFolder(
                name,
                path,
                _read_uidlist(path),
                _read_keywords(path),
                tuple(_messages(path)),
            )
        )
    return folders

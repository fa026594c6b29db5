"""The Maildir `dovecot-uidlist` file: UIDVALIDITY, next UID, mailbox GUID, UID per file.

Version 3 (Dovecot 1.1 and later):

    3 V<uidvalidity> N<nextuid> G<mailbox guid> [<key><value> ...]
    <uid> [<key><value> ...] :<file name base>

Record keys are one capital letter (S physical size, W virtual size, G message GUID, P
POP3 UIDL, O POP3 order). Version 1 (`1 <uidvalidity> <nextuid>`, `<uid> <file name>`)
is read too. The mailbox GUID names the mailbox in dovecot-attributes (spec §5.1). Like
Dovecot, a broken line makes the whole file unusable rather than silently skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptmail.errors import DovecotFormatError

_GUID = re.compile(r"[0-9a-fA-F]{32}")
_MAX_UID = 0xFFFFFFFF
# Maildir appends ":2,<flags>" (or ",<flags>" with another separator) to the base name;
# the uidlist stores the base only.
_INFO_SEPARATOR = ":"


def maildir_base_name(file_name: str) -> str:
    """The part of a Maildir file name before the info (`:2,FLAGS`) part."""
    return file_name.split(_INFO_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class UidlistRecord:
    """One message: its UID, Maildir file name base, and extension fields by key letter."""

    uid: int
    file_name: str
    extensions: Mapping[str, str] = field(default_factory=dict)

    def _number(self, key: str) -> int | None:
        value = self.extensions.get(key)
        if value is not None and value.isdigit():
            return int(value)
        # Maildir keeps the same sizes in the file name: "<base>,S=<size>,W=<vsize>".
        match = re.search(rf",{key}=([0-9]+)(?=[,:]|$)", maildir_base_name(self.file_name))
        return int(match[1]) if match else None

    @property
    def size(self) -> int | None:
        """The stored size: the `S` field, else `,S=` in the file name; None if neither."""
        return self._number("S")

    @property
    def virtual_size(self) -> int | None:
        """The size with CRLF line ends: the `W` field, else `,W=` in the file name."""
        return self._number("W")

    @property
    def guid(self) -> str | None:
        """The message GUID (`G` field), if present."""
        return self.extensions.get("G")


@dataclass(frozen=True)
class Uidlist:
    """A parsed dovecot-uidlist. `next_uid` is the header's value, raised above the last
    UID if the header lags behind the records (as Dovecot does when it reads it)."""

    version: int
    uid_validity: int
    next_uid: int
    mailbox_guid: str | None
    records: tuple[UidlistRecord, ...]
    header_extensions: Mapping[str, str] = field(default_factory=dict)

    def find(self, file_name: str) -> UidlistRecord | None:
        """The record of a Maildir file (name with or without its `:2,` info part)."""
        base = maildir_base_name(file_name)
        for record in self.records:
            if maildir_base_name(record.file_name) == base:
                return record
        return None

    def by_uid(self, uid: int) -> UidlistRecord | None:
        """The record with this UID, or None."""
        for record in self.records:
            if record.uid == uid:
                return record
        return None


def _broken(line_number: int, reason: str) -> DovecotFormatError:
    return DovecotFormatError(
        f"dovecot-uidlist line {line_number}: {reason}; Dovecot would rebuild this file, "
        "so the UIDs in it cannot be trusted"
    )


def _parse_header(line: str) -> tuple[int, int, int, str | None, dict[str, str]]:
    if len(line) < 2 or not line[0].isdigit() or line[1] != " ":
        raise _broken(1, "header has no version number")
    version = int(line[0])
    rest = line[2:]
    guid: str | None = None
    others: dict[str, str] = {}
    if version == 1:
        parts = rest.split()
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise _broken(1, "version 1 header is not '<uidvalidity> <nextuid>'")
        uid_validity, next_uid = int(parts[0]), int(parts[1])
    elif version == 3:
        uid_validity = next_uid = 0
        for token in rest.split(" "):
            if not token:
                continue
            key, value = token[0], token[1:]
            if key in "VN":
                if not value.isdigit():
                    raise _broken(1, f"header field {key} is not a number")
                if key == "V":
                    uid_validity = int(value)
                else:
                    next_uid = int(value)
            elif key == "G":
                if not _GUID.fullmatch(value):
                    raise _broken(1, "mailbox GUID is not 32 hex digits")
                guid = value.lower()
            else:
                others[key] = value
    else:
        raise _broken(1, f"version {version} is not supported (only 1 and 3)")
    if not 0 < uid_validity <= _MAX_UID or not 0 < next_uid <= _MAX_UID:
        raise _broken(1, "UIDVALIDITY and next UID must be between 1 and 2^32-1")
    return version, uid_validity, next_uid, guid, others


def _parse_record(version: int, line: str, number: int) -> UidlistRecord:
    match = re.match(r"([0-9]+) ", line)
    if match is None:
        raise _broken(number, "record does not start with '<uid> '")
    uid = int(match[1])
    if not 0 < uid < _MAX_UID:
        raise _broken(number, f"UID {uid} is out of range")
    rest = line[match.end() :].lstrip(" ")
    extensions: dict[str, str] = {}
    if version == 3:
        while rest and not rest.startswith(":"):
            token, _, rest = rest.partition(" ")
            rest = rest.lstrip(" ")
            if not "A" <= token[0] <= "Z":
                raise _broken(number, "extension field key is not a capital letter")
            extensions[token[0]] = token[1:]
        rest = rest.removeprefix(":")
    if not rest:
        raise _broken(number, "record has no file name")
    if "/" in rest:
        raise _broken(number, "file name contains '/'")
    return UidlistRecord(uid, rest, extensions)


def parse_uidlist(data: bytes) -> Uidlist:
    """Parse a whole dovecot-uidlist file.

    File names are decoded as UTF-8 with surrogate escapes, so that any byte sequence
    maps back to the same name on disk (`os.fsencode`).

    Raises DovecotFormatError if the header or a record is broken, UIDs are not strictly
    increasing, or (version 1) a UID is not below the next UID.
    """
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise _broken(1, "the file is empty")
    version, uid_validity, next_uid, guid, others = _parse_header(lines[0])
    records: list[UidlistRecord] = []
    for number, line in enumerate(lines[1:], start=2):
        record = _parse_record(version, line, number)
        if records and record.uid <= records[-1].uid:
            raise _broken(number, f"UIDs not in increasing order ({record.uid})")
        if version == 1 and record.uid >= next_uid:
            raise _broken(number, f"UID {record.uid} is not below the next UID {next_uid}")
        records.append(record)
    if records and next_uid <= records[-1].uid:
        next_uid = records[-1].uid + 1
    return Uidlist(version, uid_validity, next_uid, guid, tuple(records), others)


def read_mailbox_guid(data: bytes) -> str:
    """The mailbox GUID (lowercase hex) from the first line of a dovecot-uidlist.

    Raises DovecotFormatError if the header is broken or carries no GUID.
    """
    first_line = data.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
    guid = _parse_header(first_line)[3]
    if guid is None:
        raise DovecotFormatError(
            "dovecot-uidlist has no mailbox GUID (G field); Dovecot adds one when it next "
            "opens the mailbox, or run: doveadm mailbox status -u USER guid MAILBOX"
        )
    return guid

"""The dovecot-attributes dict file and the mail-crypt keys kept in it (spec §5.1, §5.2).

The file is pairs of lines, key then value, each escaped with 0x01 sequences; order is
arbitrary. mail-crypt keeps, per user, the user key pairs (on the INBOX, under the
"server" prefix) and, per mailbox GUID, the folder key pairs; each set has an `active`
pointer. `DovecotAttributes` is that model; every other entry is kept untouched in
`other`, so that parse then dump does not lose anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cryptmail.crypto.dovecot._constants import (
    ATTR_ACTIVE,
    ATTR_CRYPT_PREFIX,
    ATTR_PRIVATE_PREFIX,
    ATTR_PRIVKEYS,
    ATTR_PUBKEYS,
    ATTR_SERVER_PREFIX,
    ATTR_SHARED_PREFIX,
)
from cryptmail.crypto.dovecot._keystrings import inspect_key_string
from cryptmail.errors import DovecotFormatError

_ESCAPES = {0x01: b"\x011", 0x00: b"\x010", 0x09: b"\x01t", 0x0D: b"\x01r", 0x0A: b"\x01n"}
_UNESCAPES = {ord("1"): 0x01, ord("0"): 0x00, ord("t"): 0x09, ord("r"): 0x0D, ord("n"): 0x0A}
_GUID = re.compile(r"[0-9a-f]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{64}")


def _escape(value: bytes) -> bytes:
    return b"".join(_ESCAPES.get(byte, bytes([byte])) for byte in value)


def _unescape(line: bytes) -> bytes:
    if b"\x01" not in line:
        return line
    out = bytearray()
    index = 0
    while index < len(line):
        byte = line[index]
        if byte == 0x01 and index + 1 < len(line):
            # Dovecot's unescape keeps an unknown escape's second byte as it is.
            following = line[index + 1]
            out.append(_UNESCAPES.get(following, following))
            index += 2
        else:
            out.append(byte)
            index += 1
    return bytes(out)


def parse_dict_file(data: bytes) -> dict[str, str]:
    """Entries of a Dovecot `file:` dict. A final incomplete pair is ignored, as Dovecot does.

    Raises DovecotFormatError if a key or value is not UTF-8.
    """
    lines = data.split(b"\n")
    # A complete file ends in "\n", leaving one empty piece after the last line.
    if lines and lines[-1] == b"":
        lines.pop()
    entries: dict[str, str] = {}
    for number in range(0, len(lines) - 1, 2):
        try:
            name = _unescape(lines[number]).decode("utf-8")
            value = _unescape(lines[number + 1]).decode("utf-8")
        except UnicodeDecodeError:
            raise DovecotFormatError(
                f"dict file line {number + 1} is not UTF-8; the file may be damaged"
            ) from None
        entries[name] = value
    return entries


def dump_dict_file(entries: Mapping[str, str]) -> bytes:
    """The dict file text of `entries`, sorted by key so that output is stable."""
    return b"".join(
        _escape(name.encode("utf-8")) + b"\n" + _escape(value.encode("utf-8")) + b"\n"
        for name, value in sorted(entries.items())
    )


@dataclass(frozen=True)
class DovecotKeySet:
    """Key pairs of one owner (the user, or one mailbox): key strings by key id.

    `private_keys` and `public_keys` map a 64-hex key id to its `2:` key string;
    `active` is the id new mail (or new folder keys) is encrypted to.
    """

    active: str | None = None
    private_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    public_keys: Mapping[str, str] = field(default_factory=dict)

    def with_key(self, private_key: str, public_key: str, *, active: bool = True) -> DovecotKeySet:
        """A copy with one more key pair; it becomes `active` unless told otherwise.

        Raises DovecotFormatError if the two strings are not the same key's pair.
        """
        private_info = inspect_key_string(private_key)
        public_info = inspect_key_string(public_key)
        if (private_info.kind, public_info.kind) != ("private", "public"):
            raise DovecotFormatError("expected a private key string and a public key string")
        if private_info.key_id != public_info.key_id:
            raise DovecotFormatError("the private and public key strings are different keys")
        new_id = private_info.key_id
        return DovecotKeySet(
            active=new_id if active else self.active,
            private_keys={**self.private_keys, new_id: private_key},
            public_keys={**self.public_keys, new_id: public_key},
        )


@dataclass(frozen=True)
class DovecotAttributes:
    """The mail-crypt view of a dovecot-attributes file.

    `user_guid` is the INBOX GUID that holds the user keys; `folder_keys` maps a mailbox
    GUID (32 lowercase hex) to that mailbox's folder keys; `other` keeps every entry
    that is neither (other attributes, ACL-shared keys) by its dict key.
    """

    user_guid: str | None = None
    user_keys: DovecotKeySet = field(default_factory=DovecotKeySet)
    folder_keys: Mapping[str, DovecotKeySet] = field(default_factory=dict)
    other: Mapping[str, str] = field(default_factory=dict)

    def with_user_key(
        self, inbox_guid: str, private_key: str, public_key: str, *, active: bool = True
    ) -> DovecotAttributes:
        """A copy with one more user key pair stored on the INBOX `inbox_guid`.

        Raises DovecotFormatError if the GUID is malformed or the user keys already
        live on another INBOX GUID.
        """
        _check_guid(inbox_guid)
        if self.user_guid not in (None, inbox_guid):
            raise DovecotFormatError(
                f"user keys live on INBOX {self.user_guid}, not on {inbox_guid}"
            )
        keys = self.user_keys.with_key(private_key, public_key, active=active)
        return replace(self, user_guid=inbox_guid, user_keys=keys)

    def with_folder_key(
        self, mailbox_guid: str, private_key: str, public_key: str, *, active: bool = True
    ) -> DovecotAttributes:
        """A copy with one more folder key pair for the mailbox `mailbox_guid`.

        Raises DovecotFormatError if the GUID is malformed.
        """
        _check_guid(mailbox_guid)
        current = self.folder_keys.get(mailbox_guid, DovecotKeySet())
        folders = {
            **self.folder_keys,
            mailbox_guid: current.with_key(private_key, public_key, active=active),
        }
        return replace(self, folder_keys=folders)


def _check_guid(guid: str) -> None:
    if not _GUID.fullmatch(guid):
        raise DovecotFormatError(f"mailbox GUID {guid[:40]!r} is not 32 lowercase hex digits")


# Attribute name suffixes (after "<priv|shared>/<guid>/") and what they hold.
_USER = ATTR_SERVER_PREFIX + ATTR_CRYPT_PREFIX
_FOLDER = ATTR_CRYPT_PREFIX
_NAME = re.compile(
    r"(?P<scope>priv|shared)/(?P<guid>[0-9a-f]{32})/"
    r"(?P<owner>" + re.escape(_USER) + "|" + re.escape(_FOLDER) + r")"
    r"(?:(?P<kind>privkeys|pubkeys)/(?P<id>[0-9a-f]{64})|(?P<active>active))"
)


class _Builder:
    def __init__(self) -> None:
        self.user_guid: str | None = None
        self.user = _MutableSet()
        self.folders: dict[str, _MutableSet] = {}
        self.other: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        match = _NAME.fullmatch(name)
        if match is None or not self._expected_scope(match):
            self.other[name] = value
            return
        guid = match["guid"]
        if match["owner"] == _USER:
            if self.user_guid not in (None, guid):
                raise DovecotFormatError(
                    f"user keys on two mailboxes ({self.user_guid} and {guid}); "
                    "the attributes file is damaged"
                )
            self.user_guid = guid
            target = self.user
        else:
            target = self.folders.setdefault(guid, _MutableSet())
        if match["active"]:
            if not _KEY_ID.fullmatch(value):
                raise DovecotFormatError(f"attribute {name} is not a 64-hex key id")
            target.active = value
            return
        info = inspect_key_string(value)
        if info.key_id != match["id"] or info.kind != (
            "private" if match["kind"] == "privkeys" else "public"
        ):
            raise DovecotFormatError(f"attribute {name} holds another key than its name says")
        (target.private if info.kind == "private" else target.public)[info.key_id] = value

    @staticmethod
    def _expected_scope(match: re.Match[str]) -> bool:
        # Private keys are private attributes; public keys and `active` are shared ones.
        # Anything else (such as an ACL-shared folder key) is not ours to interpret.
        wanted = "priv" if match["kind"] == "privkeys" else "shared"
        return match["scope"] == wanted

    def build(self) -> DovecotAttributes:
        return DovecotAttributes(
            user_guid=self.user_guid,
            user_keys=self.user.frozen(),
            folder_keys={guid: keys.frozen() for guid, keys in self.folders.items()},
            other=dict(self.other),
        )


class _MutableSet:
    def __init__(self) -> None:
        self.active: str | None = None
        self.private: dict[str, str] = {}
        self.public: dict[str, str] = {}

    def frozen(self) -> DovecotKeySet:
        return DovecotKeySet(self.active, dict(self.private), dict(self.public))


def attributes_from_entries(entries: Mapping[str, str]) -> DovecotAttributes:
    """The mail-crypt model of dict entries (see `parse_dict_file`).

    Raises DovecotFormatError if a key entry is malformed or names another key.
    """
    builder = _Builder()
    for name, value in entries.items():
        builder.add(name, value)
    return builder.build()


def attributes_to_entries(attributes: DovecotAttributes) -> dict[str, str]:
    """Dict entries of the model, as Dovecot names them (spec §5.1)."""
    entries = dict(attributes.other)
    owners: list[tuple[str, str, DovecotKeySet]] = []
    if attributes.user_guid is not None:
        owners.append((attributes.user_guid, _USER, attributes.user_keys))
    owners.extend((guid, _FOLDER, keys) for guid, keys in attributes.folder_keys.items())
    for guid, owner, keys in owners:
        shared = f"{ATTR_SHARED_PREFIX}{guid}/{owner}"
        private = f"{ATTR_PRIVATE_PREFIX}{guid}/{owner}"
        if keys.active is not None:
            entries[shared + ATTR_ACTIVE] = keys.active
        for kid, text in keys.private_keys.items():
            entries[private + ATTR_PRIVKEYS + kid] = text
        for kid, text in keys.public_keys.items():
            entries[shared + ATTR_PUBKEYS + kid] = text
    return entries


def parse_attributes(data: bytes) -> DovecotAttributes:
    """The mail-crypt model of a dovecot-attributes file's bytes.

    Raises DovecotFormatError if the file or a key entry in it is malformed.
    """
    return attributes_from_entries(parse_dict_file(data))


def dump_attributes(attributes: DovecotAttributes) -> bytes:
    """The dovecot-attributes file for the model (entries sorted, as any order is valid)."""
    return dump_dict_file(attributes_to_entries(attributes))

"""Access to the Dovecot 2.3 vectors in tests/vectors/dovecot-2.3 (see its README.md)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from cryptmail.crypto.dovecot import (
    DovecotAttributes,
    DovecotKeyring,
    keyring_from_attributes,
    load_global_private_key,
    parse_attributes,
)
from cryptmail.secret import Password

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "dovecot-2.3"
GLOBAL_KEY_PASSWORDS = {"keys/frank-global-rsa2048-priv-encrypted.pem": "frank-global-pw"}
# Where each user's dovecot-attributes lives (dave and frank use global keys, no file).
ATTRIBUTE_FILES = {
    user: f"maildirs/{user}/Maildir/dovecot-attributes"
    for user in ("alice", "bob", "carol", "erin", "grace")
} | {"mona": "python-written/mona/Maildir/dovecot-attributes"}


@cache
def entries() -> tuple[dict[str, Any], ...]:
    loaded: list[dict[str, Any]] = json.loads((VECTORS / "vectors.json").read_text())
    return tuple(loaded)


def entry_id(entry: dict[str, Any]) -> str:
    return str(entry["file"]).rsplit("/", 1)[-1][:40]


@cache
def user_passwords() -> dict[str, str | None]:
    return {entry["user"]: entry["user_key_password"] for entry in entries()}


def password_of(user: str) -> Password | None:
    text = user_passwords().get(user)
    return None if text is None else Password.from_str(text)


@cache
def attributes_of(user: str) -> DovecotAttributes:
    return parse_attributes((VECTORS / ATTRIBUTE_FILES[user]).read_bytes())


@cache
def user_keyring(user: str) -> DovecotKeyring:
    return keyring_from_attributes(attributes_of(user), password_of(user))


def global_key_path(entry: dict[str, Any]) -> str | None:
    value = entry.get("global_private_key")
    return None if value is None else str(value).split(" ", 1)[0]


def keyring_for(entry: dict[str, Any]) -> DovecotKeyring:
    path = global_key_path(entry)
    if path is None:
        return user_keyring(entry["user"])
    secret = GLOBAL_KEY_PASSWORDS.get(path)
    password = None if secret is None else Password.from_str(secret)
    return DovecotKeyring([load_global_private_key((VECTORS / path).read_bytes(), password)])


@cache
def worked_example() -> dict[str, tuple[str, ...]]:
    """`name: value` lines of worked-example-alice-02.txt; a name may occur more than once
    (the user key's and the folder key's "plaintext MPI"), so each maps to its values."""
    values: dict[str, list[str]] = {}
    for line in (VECTORS / "worked-example-alice-02.txt").read_text().splitlines():
        name, sep, value = line.strip().partition(": ")
        if sep:
            values.setdefault(name.strip(), []).append(value.strip())
    return {name: tuple(found) for name, found in values.items()}

"""A keyring: the unlocked private keys a Dovecot mail file may be encrypted to.

A v2 file names its recipient by new-style key id, a v1 file by old-style id (§4.1); the
keyring answers both. It is built from a user's dovecot-attributes and password
(folder-key mode: password -> user keys -> every folder key) or from global keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cryptography.hazmat.primitives.asymmetric import ec

from cryptmail.crypto.dovecot._attributes import DovecotAttributes
from cryptmail.crypto.dovecot._constants import KEY_ENCTYPE_KEY, KEY_ENCTYPE_PASSWORD
from cryptmail.crypto.dovecot._keys import DovecotPrivateKey, key_id, old_key_id
from cryptmail.crypto.dovecot._keystrings import inspect_key_string, load_private_key_string
from cryptmail.errors import DovecotWrongPassword
from cryptmail.secret import SecretBytes


class DovecotKeyring:
    """Unlocked private keys by key id (new-style; old-style too for EC keys).

    Its repr shows only the count; the keys never appear in logs or tracebacks.
    """

    __slots__ = ("_by_id", "_ids")

    def __init__(self, private_keys: Iterable[DovecotPrivateKey] = ()) -> None:
        self._by_id: dict[str, DovecotPrivateKey] = {}
        self._ids: list[str] = []
        for private_key in private_keys:
            self.add(private_key)

    def add(self, private_key: DovecotPrivateKey) -> str:
        """Add a key; return its new-style id."""
        new_id = key_id(private_key)
        if new_id not in self._by_id:
            self._ids.append(new_id)
        self._by_id[new_id] = private_key
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            self._by_id.setdefault(old_key_id(private_key), private_key)
        return new_id

    def find(self, wanted_id: str) -> DovecotPrivateKey | None:
        """The key whose new- or old-style id is `wanted_id` (lowercase hex), or None."""
        return self._by_id.get(wanted_id)

    def key_ids(self) -> tuple[str, ...]:
        """New-style ids of the keys, in the order they were added."""
        return tuple(self._ids)

    def __contains__(self, wanted_id: object) -> bool:
        return wanted_id in self._by_id

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"DovecotKeyring({len(self._ids)} keys)"


def unlock_user_keys(
    attributes: DovecotAttributes, password: SecretBytes | None
) -> dict[str, DovecotPrivateKey]:
    """Every user private key of the attributes, unlocked, by key id.

    Keys stored in clear need no password. Keys locked to an environment key
    (`mail_crypt_private_key`, enctype 1) are skipped: Dovecot 2.3 cannot make them.

    Raises DovecotWrongPassword if a password-locked key exists and `password` is None or
    does not unlock it; DovecotFormatError if a key string is malformed.
    """
    unlocked: dict[str, DovecotPrivateKey] = {}
    for user_key_id, text in sorted(attributes.user_keys.private_keys.items()):
        info = inspect_key_string(text)
        if info.enctype == KEY_ENCTYPE_KEY:
            continue
        if info.enctype == KEY_ENCTYPE_PASSWORD and password is None:
            raise DovecotWrongPassword(
                f"user key {user_key_id} is locked with a password; give the user's password"
            )
        unlocked[user_key_id] = load_private_key_string(text, password=password)
    return unlocked


def keyring_from_attributes(
    attributes: DovecotAttributes, password: SecretBytes | None
) -> DovecotKeyring:
    """A keyring of every folder key in `attributes` that a user key unlocks.

    The password unlocks the user keys (§4.4, enctype 2), the user keys the folder keys
    (enctype 1). The user keys themselves are not in the keyring: mail is never
    encrypted to them. A folder key locked to a user key that is not in the file is
    skipped; a file encrypted to it then fails with DovecotKeyNotFound.

    Raises DovecotWrongPassword, DovecotFormatError as `unlock_user_keys`; and
    DecryptionFailed if a folder key does not match its id once unlocked.
    """
    user_keys = unlock_user_keys(attributes, password)
    keyring = DovecotKeyring()
    for guid in sorted(attributes.folder_keys):
        for text in attributes.folder_keys[guid].private_keys.values():
            info = inspect_key_string(text)
            decryption_key = (
                user_keys.get(info.encryption_key_id) if info.encryption_key_id else None
            )
            if info.enctype == KEY_ENCTYPE_KEY and decryption_key is None:
                continue
            keyring.add(
                load_private_key_string(text, password=password, decryption_key=decryption_key)
            )
    return keyring

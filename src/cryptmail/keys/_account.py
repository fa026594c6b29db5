"""An opened account key and an unlocked account: what a session holds in memory after
login, never on disk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptmail.crypto import FieldCipher, PrivateKey, PublicKeyInfo, SlotKey
from cryptmail.errors import DecryptionFailed
from cryptmail.keys._slots import SlotRow
from cryptmail.secret import SecretBytes
from cryptmail.users import User


@dataclass(frozen=True, repr=False)
class UnlockedAccount:
    """The user's private keys and data key, unlocked for one or more live sessions."""

    user: User
    account_uuid: bytes
    account_key: SecretBytes
    private_keys: Mapping[bytes, PrivateKey]
    active_key: PublicKeyInfo
    fields: FieldCipher = field(compare=False)
    # The generation of `account_key` (cm_accounts.generation when it was opened).
    generation: int = 0
    # The credential generation this unlock itself left behind when it re-keyed (a
    # re-key pending after a revocation without the key); None when it did not.
    credential_generation: int | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"UnlockedAccount(user_id={self.user.id}, keys={len(self.private_keys)})"

    def private_key(self, key_id: bytes) -> PrivateKey:
        """The private key with `key_id`; DecryptionFailed if the account has none."""
        try:
            return self.private_keys[key_id]
        except KeyError:
            raise DecryptionFailed("message key (no private key with that id)") from None


@dataclass(frozen=True, repr=False)
class AccountKey:
    """The account key, opened by the credential in `slot`; the private keys stay sealed.

    `hash_checked`: the credential was also checked against virtual_users.password,
    because that hash was changed outside cryptmail (the slot does not go with it yet).
    `slot_key`: the slot's key pair, derived from the credential (to upgrade a version-1
    slot without another Argon2). `credential_generation`: set when this login re-keyed,
    the credential generation its re-key left (sessions opened by it belong to that one).
    """

    user: User
    account_uuid: bytes
    account_key: SecretBytes
    slot: SlotRow
    hash_checked: bool = False
    generation: int = 0
    slot_key: SlotKey | None = field(default=None, compare=False)
    credential_generation: int | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"AccountKey(user_id={self.user.id}, slot={self.slot.kind})"

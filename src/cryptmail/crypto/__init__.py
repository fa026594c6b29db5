"""cryptmail.crypto: our hazmat floor. Primitives only; no I/O, no asyncio, no SQL.

Only `cryptmail.keys` and `cryptmail.store` may import this package (a test enforces it).
Every function here is built from `cryptography` and `argon2-cffi` primitives; the
formats are specified in docs/security.md. `Argon2Params` is `cryptmail.config`'s, the
one Argon2 parameter type of every layer, re-exported here for the slot functions.
"""

from cryptmail.config import Argon2Params
from cryptmail.crypto._account import (
    derive_data_key,
    new_account_key,
    new_data_key,
    open_data_key,
    open_private_key,
    seal_data_key,
    seal_private_key,
)
from cryptmail.crypto._codes import (
    code_lookup_id,
    generate_app_password,
    generate_recovery_code,
    normalize_code,
)
from cryptmail.crypto._context import context
from cryptmail.crypto._ecies import WrappedKey, open_box, seal_box, unwrap_key, wrap_key
from cryptmail.crypto._fields import FieldCipher
from cryptmail.crypto._integrity import (
    MAC_SIZE,
    KeyPairRow,
    SlotEntry,
    account_mac,
    decode_slot_list,
    delivery_mac,
    delivery_mac_key,
    delivery_tag,
    delivery_tag_key,
    derive_mac_key,
    encode_slot_list,
    macs_equal,
    slot_digest,
)
from cryptmail.crypto._kdf import derive_key
from cryptmail.crypto._keypair import (
    CurveName,
    PrivateKey,
    PublicKey,
    PublicKeyInfo,
    curve_names,
    export_private_key_pem,
    generate_private_key,
    load_public_key,
    public_info,
)
from cryptmail.crypto._labels import SERVER_KEY_SIZE
from cryptmail.crypto._slots import (
    OpenedSlot,
    SlotKey,
    SlotLabel,
    SlotPublicKey,
    derive_slot_key,
    lock_slot,
    reseal_slot,
    seal_slot,
    slot_params,
    slot_public_key,
    slot_version,
    unlock_slot,
    upgrade_slot,
)
from cryptmail.crypto._stream import (
    MAX_HEADER_SIZE,
    BlobHeader,
    BlobOpener,
    BlobSealer,
    PayloadKey,
    chunk_span,
    parse_blob_header,
    plain_header,
    unwrap_blob_key,
)

__all__ = [
    "MAC_SIZE",
    "MAX_HEADER_SIZE",
    "SERVER_KEY_SIZE",
    "Argon2Params",
    "BlobHeader",
    "BlobOpener",
    "BlobSealer",
    "CurveName",
    "FieldCipher",
    "KeyPairRow",
    "OpenedSlot",
    "PayloadKey",
    "PrivateKey",
    "PublicKey",
    "PublicKeyInfo",
    "SlotEntry",
    "SlotKey",
    "SlotLabel",
    "SlotPublicKey",
    "WrappedKey",
    "account_mac",
    "chunk_span",
    "code_lookup_id",
    "context",
    "curve_names",
    "decode_slot_list",
    "delivery_mac",
    "delivery_mac_key",
    "delivery_tag",
    "delivery_tag_key",
    "derive_data_key",
    "derive_key",
    "derive_mac_key",
    "derive_slot_key",
    "encode_slot_list",
    "export_private_key_pem",
    "generate_app_password",
    "generate_private_key",
    "generate_recovery_code",
    "load_public_key",
    "lock_slot",
    "macs_equal",
    "new_account_key",
    "new_data_key",
    "normalize_code",
    "open_box",
    "open_data_key",
    "open_private_key",
    "parse_blob_header",
    "plain_header",
    "public_info",
    "reseal_slot",
    "seal_box",
    "seal_data_key",
    "seal_private_key",
    "seal_slot",
    "slot_digest",
    "slot_params",
    "slot_public_key",
    "slot_version",
    "unlock_slot",
    "unwrap_blob_key",
    "unwrap_key",
    "upgrade_slot",
    "wrap_key",
]

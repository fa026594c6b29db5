"""cryptmail.crypto: our hazmat floor. Primitives only; no I/O, no asyncio, no SQL.

Only `cryptmail.keys` and `cryptmail.store` may import this package (a test enforces it).
Every function here is built from `cryptography` and `argon2-cffi` primitives; the
formats are specified in docs/security.md. `Argon2Params` is `cryptmail.config`'s, the
one Argon2 parameter type of every layer, re-exported here for the slot functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        sieve_record,
        sieve_record_key,
        sieve_script_key,
        slot_digest,
        staged_import_key,
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
    from cryptmail.crypto._urlauth import (
        new_url_token,
        open_url_grant,
        seal_url_grant,
        url_token_lookup,
    )
    from cryptmail.crypto._warm import warm_up

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
    "new_url_token",
    "normalize_code",
    "open_box",
    "open_data_key",
    "open_private_key",
    "open_url_grant",
    "parse_blob_header",
    "plain_header",
    "public_info",
    "reseal_slot",
    "seal_box",
    "seal_data_key",
    "seal_private_key",
    "seal_slot",
    "seal_url_grant",
    "sieve_record",
    "sieve_record_key",
    "sieve_script_key",
    "slot_digest",
    "slot_params",
    "slot_public_key",
    "slot_version",
    "staged_import_key",
    "unlock_slot",
    "unwrap_blob_key",
    "unwrap_key",
    "upgrade_slot",
    "url_token_lookup",
    "warm_up",
    "wrap_key",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_account": (
        "derive_data_key",
        "new_account_key",
        "new_data_key",
        "open_data_key",
        "open_private_key",
        "seal_data_key",
        "seal_private_key",
    ),
    "_codes": (
        "code_lookup_id",
        "generate_app_password",
        "generate_recovery_code",
        "normalize_code",
    ),
    "_context": ("context",),
    "_ecies": (
        "WrappedKey",
        "open_box",
        "seal_box",
        "unwrap_key",
        "wrap_key",
    ),
    "_fields": ("FieldCipher",),
    "_integrity": (
        "MAC_SIZE",
        "KeyPairRow",
        "SlotEntry",
        "account_mac",
        "decode_slot_list",
        "delivery_mac",
        "delivery_mac_key",
        "delivery_tag",
        "delivery_tag_key",
        "derive_mac_key",
        "encode_slot_list",
        "macs_equal",
        "sieve_record",
        "sieve_record_key",
        "sieve_script_key",
        "slot_digest",
        "staged_import_key",
    ),
    "_kdf": ("derive_key",),
    "_keypair": (
        "CurveName",
        "PrivateKey",
        "PublicKey",
        "PublicKeyInfo",
        "curve_names",
        "export_private_key_pem",
        "generate_private_key",
        "load_public_key",
        "public_info",
    ),
    "_labels": ("SERVER_KEY_SIZE",),
    "_slots": (
        "OpenedSlot",
        "SlotKey",
        "SlotLabel",
        "SlotPublicKey",
        "derive_slot_key",
        "lock_slot",
        "reseal_slot",
        "seal_slot",
        "slot_params",
        "slot_public_key",
        "slot_version",
        "unlock_slot",
        "upgrade_slot",
    ),
    "_stream": (
        "MAX_HEADER_SIZE",
        "BlobHeader",
        "BlobOpener",
        "BlobSealer",
        "PayloadKey",
        "chunk_span",
        "parse_blob_header",
        "plain_header",
        "unwrap_blob_key",
    ),
    "_urlauth": (
        "new_url_token",
        "open_url_grant",
        "seal_url_grant",
        "url_token_lookup",
    ),
    "_warm": ("warm_up",),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_account":
        from cryptmail.crypto import _account

        value = getattr(_account, name)
    elif module == "_codes":
        from cryptmail.crypto import _codes

        value = getattr(_codes, name)
    elif module == "_context":
        from cryptmail.crypto import _context

        value = getattr(_context, name)
    elif module == "_ecies":
        from cryptmail.crypto import _ecies

        value = getattr(_ecies, name)
    elif module == "_fields":
        from cryptmail.crypto import _fields

        value = getattr(_fields, name)
    elif module == "_integrity":
        from cryptmail.crypto import _integrity

        value = getattr(_integrity, name)
    elif module == "_kdf":
        from cryptmail.crypto import _kdf

        value = getattr(_kdf, name)
    elif module == "_keypair":
        from cryptmail.crypto import _keypair

        value = getattr(_keypair, name)
    elif module == "_labels":
        from cryptmail.crypto import _labels

        value = getattr(_labels, name)
    elif module == "_slots":
        from cryptmail.crypto import _slots

        value = getattr(_slots, name)
    elif module == "_stream":
        from cryptmail.crypto import _stream

        value = getattr(_stream, name)
    elif module == "_urlauth":
        from cryptmail.crypto import _urlauth

        value = getattr(_urlauth, name)
    elif module == "_warm":
        from cryptmail.crypto import _warm

        value = getattr(_warm, name)
    elif name == "Argon2Params":
        from cryptmail.config import Argon2Params

        value = Argon2Params
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

"""Magic bytes, versions, flags, OIDs and names of Dovecot 2.3 mail-crypt.

Every value is spelled as in ../shared/spec/dovecot-mail-crypt-format.md (the section is
named beside each group), so that a reader can check one against the other.
"""

from __future__ import annotations

from typing import Final

# §2, §3.1: the encrypted stream ("CRYPTED" 0x03 0x07) and its versions.
STREAM_MAGIC: Final = b"CRYPTED\x03\x07"
STREAM_VERSION_1: Final = 0x01
STREAM_VERSION_2: Final = 0x02

# §2: v2 header flags. FLAG_VERSION_1 is internal to Dovecot's writer, never stored.
FLAG_HMAC: Final = 0x01
FLAG_AEAD: Final = 0x02
FLAG_NO_INTEGRITY: Final = 0x04
FLAG_VERSION_1: Final = 0x08
INTEGRITY_FLAGS: Final = FLAG_HMAC | FLAG_AEAD | FLAG_NO_INTEGRITY

# §2, §3.3, §3.4: sizes and counts of the v2 stream.
AEAD_TAG_SIZE: Final = 16
KEY_DATA_EXTRA_SIZE: Final = 16  # the "AAD" (GCM) or HMAC key (CBC) bytes of K
STREAM_PBKDF2_ROUNDS: Final = 2048
KEY_DATA_HASH_ROUNDS: Final = 2048
STREAM_WRAP_KEY_SIZE: Final = 32
STREAM_WRAP_IV_SIZE: Final = 16

# §3.3: recipient key types.
KEY_TYPE_RSA: Final = 0x01
KEY_TYPE_EC: Final = 0x02

# §3.2: object identifiers of stream ciphers and hashes (dotted text).
OID_AES_256_GCM: Final = "2.16.840.1.101.3.4.1.46"
OID_AES_256_CBC: Final = "2.16.840.1.101.3.4.1.42"
OID_SHA256: Final = "2.16.840.1.101.3.4.2.1"
OID_SHA384: Final = "2.16.840.1.101.3.4.2.2"
OID_SHA512: Final = "2.16.840.1.101.3.4.2.3"

# Cipher name -> (OID, key size, IV size, AEAD?). The IV size is OpenSSL's default.
STREAM_CIPHERS: Final[dict[str, tuple[str, int, int, bool]]] = {
    "aes-256-gcm": (OID_AES_256_GCM, 32, 12, True),
    "aes-256-cbc": (OID_AES_256_CBC, 32, 16, False),
}
# Hash name -> OID. The name is also hashlib's.
STREAM_HASHES: Final[dict[str, str]] = {
    "sha256": OID_SHA256,
    "sha384": OID_SHA384,
    "sha512": OID_SHA512,
}
# §3.6: what mail-crypt writes.
DEFAULT_CIPHER: Final = "aes-256-gcm"
DEFAULT_HASH: Final = "sha256"

# §4.1, §4.4: key algorithm OIDs (field 1 of `2:` private keys) and the SPKI algorithm.
OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
OID_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
OID_PRIME256V1: Final = "1.2.840.10045.3.1.7"
OID_SECP384R1: Final = "1.3.132.0.34"
OID_SECP521R1: Final = "1.3.132.0.35"
OID_SECP256K1: Final = "1.3.132.0.10"

# OpenSSL short curve name -> OID; the names are those of `mail_crypt_curve` (§5.4).
CURVE_OIDS: Final[dict[str, str]] = {
    "prime256v1": OID_PRIME256V1,
    "secp384r1": OID_SECP384R1,
    "secp521r1": OID_SECP521R1,
    "secp256k1": OID_SECP256K1,
}

# §4.6: `1:` keys name the curve by OpenSSL NID, not by OID.
CURVE_NIDS: Final[dict[int, str]] = {
    415: "prime256v1",
    715: "secp384r1",
    716: "secp521r1",
    714: "secp256k1",
}

# §4.2, §4.4: key strings.
KEY_VERSION_1: Final = "1"
KEY_VERSION_2: Final = "2"
KEY_ENCTYPE_NONE: Final = 0
KEY_ENCTYPE_KEY: Final = 1
KEY_ENCTYPE_PASSWORD: Final = 2
KEY_CIPHER: Final = "aes-256-ctr"
KEY_KDF_HASH: Final = "sha256"
KEY_PBKDF2_ROUNDS: Final = 2048
KEY_SALT_SIZE: Final = 8
KEY_SECRET_SIZE: Final = 16  # RSA-wrapped secret of enctype 1 to an RSA key
KEY_V1_PBKDF2_ROUNDS: Final = 16

# A stored round count above this is refused before any work (age-style ceiling).
MAX_PBKDF2_ROUNDS: Final = 1 << 20
# Ceiling on a v2 header; a real one is a few hundred bytes (RSA-8192: about 1.1 KiB).
MAX_HEADER_SIZE: Final = 1 << 16

# §5.1: attribute dict keys.
ATTR_PRIVATE_PREFIX: Final = "priv/"
ATTR_SHARED_PREFIX: Final = "shared/"
ATTR_SERVER_PREFIX: Final = "vendor/vendor.dovecot/pvt/server/"
ATTR_CRYPT_PREFIX: Final = "vendor/vendor.dovecot/pvt/crypt/"
ATTR_PRIVKEYS: Final = "privkeys/"
ATTR_PUBKEYS: Final = "pubkeys/"
ATTR_ACTIVE: Final = "active"

# §5.1: the mailbox GUID is 32 lowercase hex digits; key ids are 64.
MAILBOX_GUID_HEX_SIZE: Final = 32
KEY_ID_HEX_SIZE: Final = 64

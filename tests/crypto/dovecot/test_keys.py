"""Key ids, `2:`/`1` key strings, MPI and global key files against the Dovecot vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.crypto.dovecot import (
    dump_private_key_string,
    dump_public_key_string,
    export_private_key_pem,
    generate_dovecot_key,
    inspect_key_string,
    key_id,
    load_global_private_key,
    load_global_public_key,
    load_private_key_string,
    load_public_key_string,
    mpi_decode,
    mpi_encode,
    old_key_id,
    public_key_der,
    unlock_user_keys,
)
from cryptmail.crypto.dovecot._der import decode_oid, encode_oid
from cryptmail.crypto.dovecot._keystrings import _dump_private_key_string
from cryptmail.errors import (
    DecryptionFailed,
    DovecotFormatError,
    DovecotKeyNotFound,
    DovecotWrongPassword,
)
from cryptmail.secret import Password

from ._vectors import (
    ATTRIBUTE_FILES,
    VECTORS,
    attributes_of,
    entries,
    password_of,
    worked_example,
)

ALICE_PASSWORD = Password.from_str("Alice-Secret-521")


def _all_key_strings() -> list[tuple[str, str, str]]:
    """(user, key id from the attribute name, key string) of every key in the vectors."""
    found = []
    for user in sorted(ATTRIBUTE_FILES):
        attributes = attributes_of(user)
        sets = [attributes.user_keys, *attributes.folder_keys.values()]
        for keys in sets:
            for kid, text in [*keys.private_keys.items(), *keys.public_keys.items()]:
                found.append((user, kid, text))
    return found


def _alice_user_key() -> ec.EllipticCurvePrivateKey:
    text = attributes_of("alice").user_keys.private_keys[worked_example()["SHA-256 = key id"][0]]
    key = load_private_key_string(text, password=ALICE_PASSWORD)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# -- key ids and DER ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "prefix"),
    [
        ("prime256v1", "3039301306072a8648ce3d020106082a8648ce3d030107032200"),
        ("secp384r1", "3046301006072a8648ce3d020106052b81040022033200"),
        ("secp521r1", "3058301006072a8648ce3d020106052b81040023034400"),
    ],
)
def test_compressed_spki_prefix_is_the_spec_table(curve: str, prefix: str) -> None:
    key = generate_dovecot_key(curve)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    assert public_key_der(key).hex() == prefix + point.hex()
    assert key_id(key) == hashlib.sha256(bytes.fromhex(prefix) + point).hexdigest()


def test_compressed_spki_parses_back_as_the_same_key() -> None:
    key = generate_dovecot_key("secp384r1")
    loaded = serialization.load_der_public_key(public_key_der(key))
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    assert loaded.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    "oid", ["2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.2.3", "1.3.132.0.35", "1.2.3"]
)
def test_oid_round_trip(oid: str) -> None:
    encoded = encode_oid(oid)
    assert decode_oid(encoded + b"rest") == (oid, len(encoded))


def test_oid_of_aes_256_gcm_is_the_spec_bytes() -> None:
    assert encode_oid("2.16.840.1.101.3.4.1.46").hex() == "060960864801650304012e"
    assert encode_oid("2.16.840.1.101.3.4.2.1").hex() == "0609608648016503040201"


@pytest.mark.parametrize(
    "bad", [b"", b"\x05\x00", b"\x06\x00", b"\x06\x02\x2b\x86", b"\x06\x05\x2b"]
)
def test_bad_oids_are_refused(bad: bytes) -> None:
    with pytest.raises(DovecotFormatError):
        decode_oid(bad)


@pytest.mark.parametrize(("user", "kid", "text"), _all_key_strings(), ids=lambda v: str(v)[:12])
def test_every_public_key_string_loads_with_its_id(user: str, kid: str, text: str) -> None:
    info = inspect_key_string(text)
    assert info.key_id == kid
    if info.kind == "public":
        key = load_public_key_string(text)
        assert key_id(key) == kid
        assert dump_public_key_string(key) == text


def test_old_key_id_of_erins_folder_key_is_the_v1_file_recipient() -> None:
    erin = attributes_of("erin")
    [folder_keys] = erin.folder_keys.values()
    public = load_public_key_string(folder_keys.public_keys[folder_keys.active or ""])
    v1_ids = {entry["recipient_key_id_old"] for entry in entries() if entry["format"] == "v1"}
    assert v1_ids == {old_key_id(public)}


def test_old_key_id_uses_upper_case_hex() -> None:
    key = generate_dovecot_key("prime256v1")
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    assert old_key_id(key) == hashlib.sha256(point.hex().upper().encode()).hexdigest()
    assert old_key_id(key) != hashlib.sha256(point.hex().encode()).hexdigest()


def test_rsa_keys_have_no_old_id() -> None:
    key = load_global_private_key((VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes())
    with pytest.raises(DovecotFormatError):
        old_key_id(key)


# -- MPI ---------------------------------------------------------------------------------


def test_mpi_known_answers() -> None:
    assert mpi_encode(0) == b"\x00\x00\x00\x00"
    assert mpi_encode(0x7F) == bytes.fromhex("000000017f")
    assert mpi_encode(0x80) == bytes.fromhex("000000020080")
    assert mpi_encode(0x1234) == bytes.fromhex("000000021234")


@given(st.integers(min_value=0, max_value=1 << 600))
def test_mpi_round_trip(value: int) -> None:
    assert mpi_decode(mpi_encode(value)) == value


@pytest.mark.parametrize(
    "bad", [b"", b"\x00\x00\x00", bytes.fromhex("0000000280"), bytes.fromhex("0000000180")]
)
def test_bad_mpis_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="MPI"):
        mpi_decode(bad)


def test_worked_example_user_key_mpi() -> None:
    values = worked_example()
    key = _alice_user_key()
    assert mpi_encode(key.private_numbers().private_value).hex() == values["plaintext MPI"][0]
    assert public_key_der(key).hex() == values["compressed SPKI of derived public key"][0]


def test_worked_example_user_key_kdf_and_ctr() -> None:
    values = worked_example()
    salt = bytes.fromhex(values["salt"][0])
    stretched = hashlib.pbkdf2_hmac("sha256", b"Alice-Secret-521", salt, 2048, 48)
    assert stretched.hex() == values["PBKDF2-HMAC-SHA256(password, salt, 2048, 48)"][0]
    locked = bytes.fromhex(values["key string"][0].split(":")[7])
    context = Cipher(algorithms.AES(stretched[:32]), modes.CTR(stretched[32:])).decryptor()
    assert context.update(locked).hex() == values["plaintext MPI"][0]


# -- unlocking the vectors' keys ---------------------------------------------------------


def _exported() -> list[Path]:
    return sorted((VECTORS / "exported-keys").glob("*.pem"))


@pytest.mark.parametrize("pem_path", _exported(), ids=lambda path: path.stem[:20])
def test_every_exported_pem_equals_the_unlocked_key(pem_path: Path) -> None:
    user, wanted = pem_path.stem.split("-", 1)
    attributes = attributes_of(user)
    user_keys = unlock_user_keys(attributes, password_of(user))
    if wanted in user_keys:
        key = user_keys[wanted]
    else:
        [text] = [
            keys.private_keys[wanted]
            for keys in attributes.folder_keys.values()
            if wanted in keys.private_keys
        ]
        encrypted_by = inspect_key_string(text).encryption_key_id or ""
        key = load_private_key_string(text, decryption_key=user_keys[encrypted_by])
    assert key_id(key) == wanted
    # doveadm's export is byte-identical to cryptography's PKCS#8 PEM of the same key.
    assert export_private_key_pem(key) == pem_path.read_bytes()


def test_all_eleven_exported_keys_are_tested() -> None:
    assert len(_exported()) == 11


def test_private_key_scalar_lengths_vary_as_the_spec_says() -> None:
    lengths = set()
    for user in ("alice", "bob", "carol", "erin", "grace", "mona"):
        for kid, key in unlock_user_keys(attributes_of(user), password_of(user)).items():
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            lengths.add((key.curve.name, len(mpi_encode(key.private_numbers().private_value)) - 4))
            assert key_id(key) == kid
    # 65 and 66 bytes for P-521 among the user keys alone.
    assert {("secp521r1", 65), ("secp521r1", 66)} <= lengths


def test_grace_user_key_is_stored_in_clear() -> None:
    [text] = attributes_of("grace").user_keys.private_keys.values()
    info = inspect_key_string(text)
    assert (info.version, info.kind, info.enctype) == (2, "private", 0)
    assert key_id(load_private_key_string(text)) == info.key_id


def test_wrong_password_is_refused() -> None:
    text = worked_example()["key string"][0]
    with pytest.raises(DovecotWrongPassword) as caught:
        load_private_key_string(text, password=Password.from_str("Alice-Secret-52"))
    assert "Alice" not in str(caught.value)


def test_missing_password_is_refused() -> None:
    with pytest.raises(DovecotWrongPassword, match="password"):
        load_private_key_string(worked_example()["key string"][0])


def test_folder_key_needs_its_user_key() -> None:
    folder_text = worked_example()["key string"][1]
    with pytest.raises(DovecotKeyNotFound):
        load_private_key_string(folder_text)
    with pytest.raises(DovecotKeyNotFound):
        load_private_key_string(folder_text, decryption_key=generate_dovecot_key())
    key = load_private_key_string(folder_text, decryption_key=_alice_user_key())
    assert key_id(key) == worked_example()["key id"][0]


def test_changed_folder_key_fails_authentication() -> None:
    fields = worked_example()["key string"][1].split(":")
    locked = bytearray(bytes.fromhex(fields[7]))
    locked[-1] ^= 1
    fields[7] = locked.hex()
    with pytest.raises(DecryptionFailed):
        load_private_key_string(":".join(fields), decryption_key=_alice_user_key())


def test_changed_clear_key_is_refused() -> None:
    [text] = attributes_of("grace").user_keys.private_keys.values()
    fields = text.split(":")
    fields[3] = fields[3][:-1] + ("0" if fields[3][-1] != "0" else "1")
    with pytest.raises(DovecotFormatError):
        load_private_key_string(":".join(fields))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3:abc",
        "2:",
        "2:1.3.132.0.35",
        "1:415:0:00:" + "0" * 64,
        "2\t1.3.132.0.35\t0\t00\t" + "0" * 64,
        "2:1.3.132.0.35:0:zz:" + "0" * 64,
        "2:1.3.132.0.35:0:00:" + "0" * 63,
        "2:1.3.132.0.35:7:00:" + "0" * 64,
        "2:1.3.132.0.35:2:aes-256-ctr:00:sha256:2048:00:" + "0" * 64 + ":extra",
        "2:9.9.9:0:00:" + "0" * 64,
        "2:1.3.132.0.35:2:aes-256-cbc:00:sha256:2048:00:" + "0" * 64,
        "2:1.3.132.0.35:2:aes-256-ctr:00:md5:2048:00:" + "0" * 64,
        "2:1.3.132.0.35:2:aes-256-ctr:00:sha256:99999999:00:" + "0" * 64,
        "2:1.3.132.0.35:2:aes-256-ctr:00:sha256:-1:00:" + "0" * 64,
    ],
)
def test_malformed_key_strings_are_refused(text: str) -> None:
    with pytest.raises(DovecotFormatError):
        load_private_key_string(text, password=ALICE_PASSWORD)


def test_public_string_with_another_id_is_refused() -> None:
    key = generate_dovecot_key("prime256v1")
    text = dump_public_key_string(key)
    with pytest.raises(DovecotFormatError):
        load_public_key_string(text[:-64] + key_id(generate_dovecot_key("prime256v1")))


def test_private_and_public_strings_are_not_mixed_up() -> None:
    key = generate_dovecot_key("prime256v1")
    with pytest.raises(DovecotFormatError):
        load_private_key_string(dump_public_key_string(key))
    with pytest.raises(DovecotFormatError):
        load_public_key_string(dump_private_key_string(key))


# -- writing ---------------------------------------------------------------------------


def test_password_key_string_is_byte_identical_to_dovecots() -> None:
    """Same key, password and salt: our enctype 2 string equals the one Dovecot wrote."""
    values = worked_example()
    written = _dump_private_key_string(
        _alice_user_key(),
        password=ALICE_PASSWORD,
        encryption_key=None,
        salt=bytes.fromhex(values["salt"][0]),
        ephemeral_key=None,
    )
    assert written == values["key string"][0]


def test_clear_key_string_is_byte_identical_to_dovecots() -> None:
    [text] = attributes_of("grace").user_keys.private_keys.values()
    assert dump_private_key_string(load_private_key_string(text)) == text


@pytest.mark.parametrize("curve", ["prime256v1", "secp384r1", "secp521r1"])
def test_written_key_strings_round_trip(curve: str) -> None:
    user_key = generate_dovecot_key(curve)
    folder_key = generate_dovecot_key(curve)
    password = Password.from_str("pässwörd with ünïcode")
    user_text = dump_private_key_string(user_key, password=password)
    folder_text = dump_private_key_string(folder_key, encryption_key=user_key.public_key())
    clear_text = dump_private_key_string(folder_key)

    assert re.fullmatch(
        r"2:[0-9.]+:2:aes-256-ctr:[0-9a-f]{16}:sha256:2048:[0-9a-f]+:[0-9a-f]{64}", user_text
    )
    assert re.fullmatch(
        r"2:[0-9.]+:1:aes-256-ctr:[0-9a-f]{16}:sha256:2048:[0-9a-f]+:04[0-9a-f]+:"
        r"[0-9a-f]{64}:[0-9a-f]{64}",
        folder_text,
    )
    assert inspect_key_string(folder_text).encryption_key_id == key_id(user_key)
    unlocked_user = load_private_key_string(user_text, password=password)
    assert key_id(unlocked_user) == key_id(user_key)
    unlocked_folder = load_private_key_string(folder_text, decryption_key=unlocked_user)
    assert (
        key_id(unlocked_folder) == key_id(folder_key) == key_id(load_private_key_string(clear_text))
    )


def test_two_writes_use_fresh_salts() -> None:
    key = generate_dovecot_key("prime256v1")
    first = dump_private_key_string(key, password=ALICE_PASSWORD)
    second = dump_private_key_string(key, password=ALICE_PASSWORD)
    assert first.split(":")[4] != second.split(":")[4]


def test_lock_with_password_and_key_at_once_is_a_mistake() -> None:
    key = generate_dovecot_key("prime256v1")
    with pytest.raises(ValueError, match="not both"):
        dump_private_key_string(key, password=ALICE_PASSWORD, encryption_key=key.public_key())


def test_locking_to_an_rsa_key_is_refused() -> None:
    rsa_key = load_global_private_key((VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes())
    with pytest.raises(DovecotFormatError, match="RSA"):
        dump_private_key_string(generate_dovecot_key(), encryption_key=rsa_key.public_key())


def test_rsa_private_key_strings_round_trip() -> None:
    rsa_key = load_global_private_key((VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes())
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    for text in (
        dump_private_key_string(rsa_key),
        dump_private_key_string(rsa_key, password=ALICE_PASSWORD),
    ):
        assert text.split(":")[1] == "1.2.840.113549.1.1.1"
        loaded = load_private_key_string(text, password=ALICE_PASSWORD)
        assert key_id(loaded) == key_id(rsa_key)
    assert key_id(load_public_key_string(dump_public_key_string(rsa_key))) == key_id(rsa_key)


# -- legacy `1` key strings (from the spec and source only; no 2.3 tool writes them) ------


def _v1_private(key: ec.EllipticCurvePrivateKey, nid: int, password_hex: str, salt: bytes) -> str:
    scalar = key.private_numbers().private_value
    raw = scalar.to_bytes((scalar.bit_length() + 7) // 8, "big")
    stretched = hashlib.pbkdf2_hmac("sha256", bytes.fromhex(password_hex), salt, 16, 32)
    context = Cipher(algorithms.AES(stretched), modes.CTR(bytes(16))).encryptor()
    locked = context.update(raw)
    return "\t".join(["1", str(nid), "2", locked.hex(), salt.hex(), old_key_id(key)])


def test_v1_key_strings_load() -> None:
    key = generate_dovecot_key("secp521r1")
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    public_text = "\t".join(["1", "716", point.hex().upper(), old_key_id(key)])
    clear_text = "\t".join(
        ["1", "716", "0", f"{key.private_numbers().private_value:X}", old_key_id(key)]
    )
    locked_text = _v1_private(key, 716, "00c0ffee", b"saltsalt")

    assert old_key_id(load_public_key_string(public_text)) == old_key_id(key)
    assert key_id(load_private_key_string(clear_text)) == key_id(key)
    unlocked = load_private_key_string(locked_text, password=Password.from_str("00c0ffee"))
    assert key_id(unlocked) == key_id(key)
    with pytest.raises(DovecotWrongPassword):
        load_private_key_string(locked_text, password=Password.from_str("00c0fffe"))
    with pytest.raises(DovecotWrongPassword, match="hex"):
        load_private_key_string(locked_text, password=Password.from_str("not hex"))


# -- global key files --------------------------------------------------------------------


def _users_file_values(setting: str) -> list[str]:
    text = (VECTORS / "config/users").read_text()
    return re.findall(rf"userdb_{setting}=(\S+)", text)


def test_global_keys_in_every_accepted_form() -> None:
    dave_pem = (VECTORS / "keys/dave-global-ec-p256-priv.pem").read_bytes()
    dave = load_global_private_key(dave_pem)
    wanted = key_id(dave)
    frank_password = Password.from_str("frank-global-pw")

    for encoded in _users_file_values("mail_crypt_global_private_key"):
        key = load_global_private_key(encoded, frank_password)
        assert key_id(key) in {
            wanted,
            key_id(
                load_global_private_key(
                    (VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes()
                )
            ),
        }
    for encoded in _users_file_values("mail_crypt_global_public_key"):
        load_global_public_key(encoded)

    assert (
        key_id(load_global_public_key((VECTORS / "keys/dave-global-ec-p256-pub.pem").read_bytes()))
        == wanted
    )
    assert key_id(load_global_private_key(dump_private_key_string(dave))) == wanted
    assert key_id(load_global_public_key(dump_public_key_string(dave))) == wanted
    assert (
        key_id(load_global_private_key(base64.b64encode(dump_private_key_string(dave).encode())))
        == wanted
    )


def _b64url(value: int, size: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode()


def test_jwk_keys() -> None:
    ec_key = generate_dovecot_key("secp384r1")
    numbers = ec_key.private_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64url(numbers.public_numbers.x, 48),
        "y": _b64url(numbers.public_numbers.y, 48),
        "d": _b64url(numbers.private_value, 48),
    }
    assert key_id(load_global_private_key(json.dumps(jwk))) == key_id(ec_key)
    public_only = {name: value for name, value in jwk.items() if name != "d"}
    assert key_id(load_global_public_key(json.dumps(public_only))) == key_id(ec_key)
    with pytest.raises(DovecotFormatError, match="private"):
        load_global_private_key(json.dumps(public_only))

    rsa_key = load_global_private_key((VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes())
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    rsa_numbers = rsa_key.private_numbers()
    rsa_jwk = {
        "kty": "RSA",
        "n": _b64url(rsa_numbers.public_numbers.n, 256),
        "e": _b64url(rsa_numbers.public_numbers.e, 3),
        "d": _b64url(rsa_numbers.d, 256),
    }
    encoded = base64.b64encode(json.dumps(rsa_jwk).encode())
    assert key_id(load_global_private_key(encoded)) == key_id(rsa_key)


def test_encrypted_pem_needs_the_right_password() -> None:
    pem = (VECTORS / "keys/frank-global-rsa2048-priv-encrypted.pem").read_bytes()
    with pytest.raises(DovecotWrongPassword):
        load_global_private_key(pem)
    with pytest.raises(DovecotWrongPassword) as caught:
        load_global_private_key(pem, Password.from_str("frank-global-pW"))
    assert "frank-global" not in str(caught.value)
    assert isinstance(
        load_global_private_key(pem, Password.from_str("frank-global-pw")), rsa.RSAPrivateKey
    )


def test_traditional_pem_is_refused_with_a_hint() -> None:
    key = generate_dovecot_key("prime256v1")
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(DovecotFormatError, match="pkcs8"):
        load_global_private_key(traditional)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not a key",
        b"{",
        b"[]",
        b'{"kty": "OKP"}',
        b"-----BEGIN CERTIFICATE-----\nx\n",
    ],
)
def test_unusable_global_keys_are_refused(data: bytes) -> None:
    with pytest.raises(DovecotFormatError):
        load_global_private_key(data)

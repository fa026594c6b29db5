"""Mail files: every vector decrypts; every damaged file fails cleanly; the writer is
byte-compatible with Dovecot 2.3 and round-trips."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.crypto.dovecot import (
    STREAM_MAGIC,
    DovecotKeyring,
    decrypt_dovecot_bytes,
    encrypt_dovecot_stream,
    generate_dovecot_key,
    key_id,
    load_global_private_key,
    parse_dovecot_header,
    read_dovecot_file,
    read_dovecot_header,
    write_dovecot_file,
)
from cryptmail.crypto.dovecot._mailkey import key_data_hash, unwrap_v2
from cryptmail.crypto.dovecot._stream import _encrypt_dovecot_stream
from cryptmail.errors import (
    CryptmailError,
    DecryptionFailed,
    DovecotFormatError,
    DovecotKeyNotFound,
)

from ._vectors import VECTORS, entries, entry_id, keyring_for, user_keyring, worked_example

ALICE_02 = "maildirs/alice/Maildir/new/1795865478.M369764P15125.vm,S=334,W=345"
BOB_02 = "maildirs/bob/Maildir/new/1795865601.M673877P16102.vm,S=334,W=345"
LARGE = "maildirs/bob/Maildir/new/1795865601.M757908P16104.vm,S=3377750,W=3421629"
FS_CBC = "fs-crypt/aes-256-cbc-sha256.bin"
ERIN_V1 = "maildirs/erin/Maildir/new/1795865622.M575291P16303.vm,S=334,W=345"


def _vector(path: str) -> bytes:
    return (VECTORS / path).read_bytes()


def _entry(path: str) -> dict[str, Any]:
    [found] = [entry for entry in entries() if entry["file"] == path]
    return found


# -- every vector ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", entries(), ids=entry_id)
def test_every_vector_decrypts_to_its_plaintext(entry: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    size = 0
    with (VECTORS / entry["file"]).open("rb") as mail:
        for piece in read_dovecot_file(mail, keyring_for(entry), allow_unauthenticated=True):
            assert len(piece) <= 1 << 16
            digest.update(piece)
            size += len(piece)
    assert (size, digest.hexdigest()) == (entry["plaintext_len"], entry["plaintext_sha256"])
    assert (VECTORS / entry["plaintext"]).read_bytes() == _plaintext_file(entry)


def _plaintext_file(entry: dict[str, Any]) -> bytes:
    return decrypt_dovecot_bytes(
        _vector(entry["file"]), keyring_for(entry), allow_unauthenticated=True
    )


@pytest.mark.parametrize("entry", entries(), ids=entry_id)
def test_every_vector_header_matches_its_description(entry: dict[str, Any]) -> None:
    data = _vector(entry["file"])
    assert len(data) == entry["size"]
    with (VECTORS / entry["file"]).open("rb") as mail:
        header = read_dovecot_header(mail)
    if entry["format"].startswith("empty"):
        assert header is None and data == b""
        return
    assert header is not None
    assert header == parse_dovecot_header(data)
    [recipient] = header.recipients
    assert len(recipient.ephemeral_key) == entry.get(
        "ephemeral_key_len", entry.get("ephemeral_point_len")
    )
    if entry["format"] == "v1":
        assert header.version == 1 and not header.authenticated
        assert recipient.key_id == entry["recipient_key_id_old"]
        return
    assert header.version == 2 and header.authenticated
    assert (header.flags, header.size, header.rounds) == (
        entry["flags"],
        entry["header_len"],
        entry["rounds"],
    )
    assert (header.cipher, header.digest) == (entry["cipher"], entry["mac"])
    assert recipient.key_id == entry["recipient_key_id"]
    assert recipient.key_type == (2 if entry["recipient_key_type"] == "EC" else 1)
    assert recipient.algorithm == entry["recipient_key_type"]
    assert header.trailer_size == entry["trailer_len"]
    assert header.size == 48 + entry["key_data_len"]


# -- the worked example ------------------------------------------------------------------


def test_worked_example_key_material_and_body() -> None:
    values = worked_example()
    data = _vector(ALICE_02)
    header = parse_dovecot_header(data)
    assert data[: header.size].hex() == values["header"][0]
    key_material = unwrap_v2(header, user_keyring("alice"))
    assert key_material.hex() == values["key data (AES-256-CBC/PKCS#7 decrypted, 60 bytes)"][0]
    assert key_data_hash("sha256", key_material).hex() == values["key data hash"][0]
    assert data[-16:].hex() == values["GCM tag (last 16 bytes of file)"][0]


def test_writer_body_is_byte_identical_to_dovecots() -> None:
    """Same per-mail key and plaintext: our ciphertext and tag equal Dovecot's."""
    data = _vector(ALICE_02)
    header = parse_dovecot_header(data)
    key_material = unwrap_v2(header, user_keyring("alice"))
    folder_key = user_keyring("alice").find(header.recipients[0].key_id)
    assert isinstance(folder_key, ec.EllipticCurvePrivateKey)
    ours = b"".join(
        _encrypt_dovecot_stream(
            [_vector("plain/02-ascii.eml")],
            folder_key.public_key(),
            key_material=key_material,
            ephemeral_key=None,
        )
    )
    ours_header = parse_dovecot_header(ours)
    assert ours[ours_header.size :] == data[header.size :]
    # The header has the same layout; only the ephemeral point and its wrap differ.
    assert ours_header.size == header.size
    assert ours[:48] == data[:48]
    assert ours_header.key_hash == header.key_hash
    assert ours_header.recipients[0].key_id == header.recipients[0].key_id


def test_writer_is_deterministic_given_its_seams() -> None:
    recipient = generate_dovecot_key("prime256v1")
    ephemeral = generate_dovecot_key("prime256v1")
    first, second = (
        b"".join(
            _encrypt_dovecot_stream(
                [b"abc", b"", b"def"],
                recipient.public_key(),
                key_material=bytes(range(60)),
                ephemeral_key=ephemeral,
            )
        )
        for _ in range(2)
    )
    assert first == second
    with pytest.raises(ValueError, match="60 bytes"):
        next(
            _encrypt_dovecot_stream(
                [b"x"], recipient.public_key(), key_material=b"short", ephemeral_key=None
            )
        )


# -- writing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "header_size"), [("prime256v1", 255), ("secp384r1", 287), ("secp521r1", 323)]
)
def test_written_file_has_the_spec_overhead(curve: str, header_size: int) -> None:
    key = generate_dovecot_key(curve)
    plaintext = b"Subject: hi\n\nbody\n"
    written = write_dovecot_file(plaintext, key.public_key())
    header = parse_dovecot_header(written)
    assert header.size == header_size
    assert len(written) == header_size + len(plaintext) + 16
    assert header.recipients[0].key_id == key_id(key)
    assert decrypt_dovecot_bytes(written, DovecotKeyring([key])) == plaintext


def test_written_file_for_an_rsa_recipient() -> None:
    rsa_key = load_global_private_key(_vector("keys/frank-global-rsa2048-priv.pem"))
    written = write_dovecot_file(b"x" * 1000, rsa_key.public_key())
    assert parse_dovecot_header(written).size == 382
    assert decrypt_dovecot_bytes(written, DovecotKeyring([rsa_key])) == b"x" * 1000


def test_empty_plaintext_gives_an_empty_file() -> None:
    key = generate_dovecot_key("prime256v1")
    assert write_dovecot_file(b"", key.public_key()) == b""
    assert list(encrypt_dovecot_stream([b"", b""], key.public_key())) == []


_KEYS = {curve: generate_dovecot_key(curve) for curve in ("prime256v1", "secp521r1")}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), max_size=6),
    st.sampled_from(sorted(_KEYS)),
    st.integers(min_value=1, max_value=5000),
)
def test_write_then_read_round_trip(pieces: list[bytes], curve: str, chunk_size: int) -> None:
    key = _KEYS[curve]
    written = b"".join(encrypt_dovecot_stream(pieces, key.public_key()))
    out = list(read_dovecot_file(io.BytesIO(written), DovecotKeyring([key]), chunk_size=chunk_size))
    assert b"".join(out) == b"".join(pieces)
    assert all(len(piece) <= chunk_size for piece in out)


def test_large_vector_streams_in_bounded_pieces() -> None:
    with (VECTORS / LARGE).open("rb") as mail:
        sizes = [len(piece) for piece in read_dovecot_file(mail, user_keyring("bob"))]
    assert sum(sizes) == 3377750
    assert max(sizes) <= 1 << 16


def test_reading_starts_at_the_current_position() -> None:
    data = _vector(BOB_02)
    stream = io.BytesIO(b"prefix" + data)
    stream.seek(6)
    assert b"".join(read_dovecot_file(stream, user_keyring("bob"))) == _vector("plain/02-ascii.eml")


# -- plaintext, v1, policy ---------------------------------------------------------------


def test_unencrypted_files_pass_through_like_dovecot() -> None:
    keyring = DovecotKeyring()
    mail = b"From: a@example.org\n\nhello\n"
    assert decrypt_dovecot_bytes(mail, keyring) == mail
    assert decrypt_dovecot_bytes(b"", keyring) == b""
    # A short file that is only the beginning of the magic is text to Dovecot too.
    assert decrypt_dovecot_bytes(STREAM_MAGIC[:5], keyring) == STREAM_MAGIC[:5]
    with pytest.raises(DovecotFormatError, match="not encrypted"):
        decrypt_dovecot_bytes(mail, keyring, allow_plaintext=False)
    assert decrypt_dovecot_bytes(b"", keyring, allow_plaintext=False) == b""


def test_v1_needs_consent() -> None:
    keyring = user_keyring("erin")
    with pytest.raises(DovecotFormatError, match="no integrity"):
        decrypt_dovecot_bytes(_vector(ERIN_V1), keyring)
    plaintext = decrypt_dovecot_bytes(_vector(ERIN_V1), keyring, allow_unauthenticated=True)
    assert plaintext == _vector("plain/02-ascii.eml")


def test_non_seekable_input_is_refused() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

    with pytest.raises(DovecotFormatError, match="seekable"):
        read_dovecot_file(Pipe(), DovecotKeyring())  # type: ignore[arg-type]  # RawIOBase is a binary stream


def test_unknown_recipient_names_the_key_id() -> None:
    recipient = _entry(BOB_02)["recipient_key_id"]
    with pytest.raises(DovecotKeyNotFound, match=recipient):
        decrypt_dovecot_bytes(_vector(BOB_02), user_keyring("alice"))


def test_second_recipient_is_found() -> None:
    """Dovecot cannot read multi-recipient headers (§3.5); we parse them properly."""
    data = _vector(BOB_02)
    header = parse_dovecot_header(data)
    stranger = generate_dovecot_key("prime256v1")
    point = b"\x04" + bytes(64)
    extra = (
        b"\x02"
        + bytes.fromhex(key_id(stranger))
        + len(point).to_bytes(4, "big")
        + point
        + (64).to_bytes(4, "big")
        + bytes(64)
    )
    key_data_start = 48 + 1
    size = header.size + len(extra)
    spliced = (
        data[:14]
        + size.to_bytes(4, "big")
        + data[18:44]
        + (size - 48).to_bytes(4, "big")
        + b"\x02"
        + extra
        + data[key_data_start:]
    )
    parsed = parse_dovecot_header(spliced)
    assert [r.key_id for r in parsed.recipients] == [key_id(stranger), header.recipients[0].key_id]
    assert decrypt_dovecot_bytes(spliced, user_keyring("bob")) == _vector("plain/02-ascii.eml")


# -- damaged files -----------------------------------------------------------------------


def _flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= mask
    return bytes(damaged)


def _fails_cleanly(data: bytes, keyring: DovecotKeyring) -> type[CryptmailError]:
    """Reading `data` must raise one of our errors before any plaintext is handed out."""
    with pytest.raises(CryptmailError) as caught:
        read_dovecot_file(io.BytesIO(data), keyring)
    return type(caught.value)


@pytest.mark.parametrize("path", [BOB_02, FS_CBC], ids=["gcm", "cbc-hmac"])
def test_every_flipped_header_bit_fails(path: str) -> None:
    data = _vector(path)
    keyring = keyring_for(_entry(path))
    size = parse_dovecot_header(data).size
    seen = set()
    for position in range(len(STREAM_MAGIC), size):
        mask = 0x80 if position == 9 else 0x01  # 0x02 ^ 0x01 would be the v1 version byte
        seen.add(_fails_cleanly(_flip(data, position, mask), keyring))
    assert seen <= {DovecotFormatError, DovecotKeyNotFound, DecryptionFailed}
    assert DecryptionFailed in seen


def test_flipped_magic_makes_the_file_text_as_in_dovecot() -> None:
    """Without its magic a file is served as it is: ciphertext, never decrypted bytes."""
    data = _vector(BOB_02)
    for position in range(len(STREAM_MAGIC)):
        damaged = _flip(data, position)
        assert decrypt_dovecot_bytes(damaged, user_keyring("bob")) == damaged
        with pytest.raises(DovecotFormatError, match="not encrypted"):
            decrypt_dovecot_bytes(damaged, user_keyring("bob"), allow_plaintext=False)


@pytest.mark.parametrize("path", [BOB_02, FS_CBC, LARGE], ids=["gcm", "cbc-hmac", "large"])
def test_flipped_body_and_trailer_bits_fail_authentication(path: str) -> None:
    data = _vector(path)
    keyring = keyring_for(_entry(path))
    header = parse_dovecot_header(data)
    body_end = len(data) - header.trailer_size
    positions = [header.size, (header.size + body_end) // 2, body_end - 1, body_end, len(data) - 1]
    for position in positions:
        for mask in (0x01, 0x80):
            assert _fails_cleanly(_flip(data, position, mask), keyring) is DecryptionFailed


@pytest.mark.parametrize("path", [BOB_02, FS_CBC], ids=["gcm", "cbc-hmac"])
def test_every_truncation_fails(path: str) -> None:
    data = _vector(path)
    keyring = keyring_for(_entry(path))
    for length in range(len(STREAM_MAGIC), len(data)):
        _fails_cleanly(data[:length], keyring)


def test_appended_bytes_fail() -> None:
    data = _vector(BOB_02)
    assert _fails_cleanly(data + b"\x00", user_keyring("bob")) is DecryptionFailed


def test_swapped_files_of_the_same_folder_key_fail() -> None:
    """Header of one mail, body of another: the per-mail key does not fit the tag."""
    first = _vector(BOB_02)
    second = _vector("maildirs/bob/Maildir/new/1795865601.M710548P16103.vm,S=442,W=453")
    size = parse_dovecot_header(first).size
    assert _fails_cleanly(first[:size] + second[size:], user_keyring("bob")) is DecryptionFailed


def test_change_between_passes_is_caught_at_the_end() -> None:
    data = _vector(BOB_02)
    stream = io.BytesIO(data)
    pieces = read_dovecot_file(stream, user_keyring("bob"), chunk_size=16)
    size = parse_dovecot_header(data).size
    buffer = stream.getbuffer()
    buffer[size + 100] ^= 1
    del buffer
    with pytest.raises(DecryptionFailed, match="changed while being read"):
        for _ in pieces:
            pass


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (STREAM_MAGIC, "right after its magic"),
        (STREAM_MAGIC + b"\x03", "unknown format version"),
        (STREAM_MAGIC + b"\x02" + bytes(8), "header length"),
        (STREAM_MAGIC + b"\x02" + (2).to_bytes(4, "big") + (1 << 20).to_bytes(4, "big"), "length"),
        (STREAM_MAGIC + b"\x01\x00\x05", "truncated"),
    ],
)
def test_malformed_headers_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(DovecotFormatError, match=reason):
        decrypt_dovecot_bytes(data, DovecotKeyring())


def test_impossible_flag_and_cipher_pairs_are_refused() -> None:
    data = bytearray(_vector(BOB_02))
    for flags in (0x01, 0x04, 0x03, 0x08, 0x12):
        data[10:14] = flags.to_bytes(4, "big")
        with pytest.raises(DovecotFormatError, match="flags"):
            parse_dovecot_header(bytes(data))


def test_work_factor_ceiling() -> None:
    data = bytearray(_vector(BOB_02))
    data[40:44] = (1 << 24).to_bytes(4, "big")
    with pytest.raises(DovecotFormatError, match="rounds"):
        parse_dovecot_header(bytes(data))

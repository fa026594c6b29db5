"""Our format vectors, read by cryptmail.crypto and by the independent reader.

Both must open every valid vector to the recorded plaintext and refuse every invalid
one with the error the vector names (cryptmail's DecryptionFailed, MalformedObject and
KdfParametersRefused are the reader's Failed, Malformed and Refused).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cryptmail.crypto import (
    BlobOpener,
    BlobSealer,
    FieldCipher,
    PrivateKey,
    SlotLabel,
    code_lookup_id,
    context,
    derive_data_key,
    normalize_code,
    open_data_key,
    open_private_key,
    parse_blob_header,
    public_info,
    seal_box,
    slot_params,
    unlock_slot,
    unwrap_blob_key,
)
from cryptmail.crypto._keypair import load_private_key
from cryptmail.crypto._slots_v1 import unlock_slot_v1
from cryptmail.errors import DecryptionFailed, KdfParametersRefused, MalformedObject

HERE = Path(__file__).parent / "cryptmail"
VECTORS: dict[str, Any] = json.loads((HERE / "vectors.json").read_text("utf-8"))
ACCOUNTS: dict[str, dict[str, Any]] = VECTORS["accounts"]
BLOBS: dict[str, dict[str, Any]] = {blob["id"]: blob for blob in VECTORS["blobs"]}
CEILING: dict[str, int] = VECTORS["argon2_ceiling"]
OURS = {
    "DecryptionFailed": DecryptionFailed,
    "MalformedObject": MalformedObject,
    "KdfParametersRefused": KdfParametersRefused,
}


def _load_reader() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cryptmail_independent_reader", HERE / "independent_reader.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reader = _load_reader()
THEIRS = {
    "DecryptionFailed": reader.Failed,
    "MalformedObject": reader.Malformed,
    "KdfParametersRefused": reader.Refused,
}


def _ids(entries: list[dict[str, Any]], key: str = "name") -> list[str]:
    return [str(entry.get(key) or entry.get("id")) for entry in entries]


def plaintext_of(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def _private(curve: str, which: str = "primary") -> bytes:
    field = "private_key_pkcs8" if which == "primary" else "other_private_key_pkcs8"
    return bytes.fromhex(ACCOUNTS[curve][field])


# --- our code -----------------------------------------------------------------------


def our_open(blob: bytes, blob_id: bytes, private_key: PrivateKey) -> bytes:
    header = parse_blob_header(blob)
    if not header.sealed:
        return blob[header.size :]
    message_key = unwrap_blob_key(header, private_key, blob_id)
    return our_open_cached(blob, blob_id, message_key)


def our_open_cached(blob: bytes, blob_id: bytes, message_key: bytes) -> bytes:
    header = parse_blob_header(blob)
    opener = BlobOpener(header, message_key, blob_id)
    out = [opener.update(blob[i : i + 1000]) for i in range(header.size, len(blob), 1000)]
    return b"".join(out) + opener.finalize()


def our_unlock(record: bytes, credential: bytes, context: bytes) -> bytes:
    """A version-1 record, opened with its stored context."""
    slot_params(record).check_ceiling(CEILING["max_memory_kib"], CEILING["max_time_cost"])
    return unlock_slot_v1(record, credential, context)


# --- accounts -----------------------------------------------------------------------


@pytest.mark.parametrize("curve", sorted(ACCOUNTS))
def test_accounts(curve: str) -> None:
    account = ACCOUNTS[curve]
    account_key = bytes.fromhex(account["account_key"])
    key_id = bytes.fromhex(account["key_id"])
    for slot in account["slots"]:
        record = bytes.fromhex(slot["record"])
        credential = slot["credential"].encode("utf-8")
        context = bytes.fromhex(slot["context"])
        assert our_unlock(record, credential, context) == account_key
        assert reader.unlock_slot(record, credential, context, **CEILING) == account_key
    assert derive_data_key(account_key).hex() == account["data_key"]
    assert reader.derive_data_key(account_key).hex() == account["data_key"]
    sealed = bytes.fromhex(account["private_sealed"])
    ours = open_private_key(account_key, sealed, key_id)
    theirs = reader.open_private_key(account_key, sealed, key_id)
    assert public_info(ours).encoded.hex() == account["public_key"]
    assert public_info(ours).key_id == key_id == reader.key_id(theirs)
    assert reader.compact_public(theirs).hex() == account["public_key"]
    pkcs8 = _private(curve)
    assert public_info(load_private_key(pkcs8)).key_id == key_id


@pytest.mark.parametrize("curve", sorted(ACCOUNTS))
def test_a_re_keyed_account(curve: str) -> None:
    account = ACCOUNTS[curve]
    uuid = bytes.fromhex(account["account_uuid"])
    later = account["generation_1"]
    account_key = bytes.fromhex(later["account_key"])
    for slot in later["slots"]:
        record = bytes.fromhex(slot["record"])
        credential = slot["credential"].encode("utf-8")
        label = SlotLabel(uuid, slot["kind"], slot["name"], slot["generation"])
        slot_params(record).check_ceiling(CEILING["max_memory_kib"], CEILING["max_time_cost"])
        assert unlock_slot(record, credential, label).account_key == account_key
        theirs = reader.unlock_slot_v2(
            record, credential, (uuid, slot["kind"], slot["name"], slot["generation"]), **CEILING
        )
        assert theirs == account_key
    data_keys = {}
    for entry in later["data_keys"]:
        sealed = bytes.fromhex(entry["sealed"])
        ours = open_data_key(account_key, sealed, entry["generation"])
        assert ours == reader.open_data_key(account_key, sealed, entry["generation"])
        assert ours.hex() == entry["data_key"]
        data_keys[entry["generation"]] = ours
    assert data_keys[0].hex() == account["data_key"]
    key_id = bytes.fromhex(account["key_id"])
    sealed_private = bytes.fromhex(later["private_sealed"])
    assert public_info(open_private_key(account_key, sealed_private, key_id)).key_id == key_id
    field = later["field"]
    sealed_field = bytes.fromhex(field["sealed"])
    context = field["context"].encode()
    fields = FieldCipher(data_keys.pop(0), data_keys)
    assert fields.open(sealed_field, context).decode() == field["value"]
    theirs_field = reader.open_field_v2(
        {0: bytes.fromhex(account["data_key"]), **data_keys}, sealed_field, context
    )
    assert theirs_field.decode() == field["value"]


# --- blobs --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["blobs"], ids=_ids(VECTORS["blobs"], "id"))
def test_valid_blob(vector: dict[str, Any]) -> None:
    blob = base64.b64decode(vector["blob"])
    blob_id = bytes.fromhex(vector["blob_id"])
    if vector["id"] == "plain":
        expected = vector["plaintext"].encode("ascii")
        assert our_open(blob, blob_id, load_private_key(_private("x25519"))) == expected
        assert reader.open_blob(blob, blob_id, None) == expected
        return
    expected = plaintext_of(vector["size"])
    assert hashlib.sha256(expected).hexdigest() == vector["plaintext_sha256"]
    pkcs8 = _private(vector["curve"])
    message_key = bytes.fromhex(vector["message_key"])
    header = parse_blob_header(blob)
    assert header.curve == vector["curve"] and header.chunk_size == vector["chunk_size"]
    assert header.plaintext_size(len(blob)) == vector["size"]
    assert unwrap_blob_key(header, load_private_key(pkcs8), blob_id) == message_key
    assert our_open(blob, blob_id, load_private_key(pkcs8)) == expected
    assert our_open_cached(blob, blob_id, message_key) == expected
    their_key = reader.load_private_key(pkcs8)
    assert reader.unwrap_message_key(blob, blob_id, their_key) == message_key
    assert reader.open_blob(blob, blob_id, their_key) == expected
    assert reader.open_body(blob, blob_id, message_key) == expected


def _apply(blob: bytes, edits: list[dict[str, Any]]) -> bytes:
    for edit in edits:
        if edit["op"] == "flip":
            data = bytearray(blob)
            data[edit["offset"]] ^= 1 << edit["bit"]
            blob = bytes(data)
        elif edit["op"] == "segments":
            blob = b"".join(
                bytes.fromhex(part["hex"]) if isinstance(part, dict) else blob[part[0] : part[1]]
                for part in edit["segments"]
            )
        else:
            raise AssertionError(f"unknown edit {edit['op']!r}")
    return blob


INVALID_BLOBS = VECTORS["invalid"]["blobs"]


@pytest.mark.parametrize(
    "vector",
    INVALID_BLOBS,
    ids=[f"{v['base']}: {v['name']}" for v in INVALID_BLOBS],
)
def test_invalid_blob(vector: dict[str, Any]) -> None:
    base = BLOBS[vector["base"]]
    blob = _apply(base64.b64decode(base["blob"]), vector["edits"])
    assert hashlib.sha256(blob).hexdigest() == vector["sha256"]
    blob_id = bytes.fromhex(vector.get("blob_id", base["blob_id"]))
    which = vector.get("key", "primary")
    pkcs8 = _private(base["curve"], which) if which in ("primary", "other") else _private(which)
    ours: Callable[[], bytes]
    theirs: Callable[[], bytes]
    if "message_key" in vector:
        message_key = bytes.fromhex(vector["message_key"])

        def ours() -> bytes:
            return our_open_cached(blob, blob_id, message_key)

        def theirs() -> bytes:
            return reader.open_body(blob, blob_id, message_key)  # type: ignore[no-any-return]

    else:

        def ours() -> bytes:
            return our_open(blob, blob_id, load_private_key(pkcs8))

        def theirs() -> bytes:
            return reader.open_blob(blob, blob_id, reader.load_private_key(pkcs8))  # type: ignore[no-any-return]

    with pytest.raises(OURS[vector["expect"]]):
        ours()
    with pytest.raises(THEIRS[vector["expect"]]):
        theirs()


def test_invalid_blobs_cover_every_curve() -> None:
    curves = {BLOBS[v["base"]]["curve"] for v in INVALID_BLOBS}
    assert curves == set(ACCOUNTS)
    assert {v["expect"] for v in INVALID_BLOBS} == {"DecryptionFailed", "MalformedObject"}


# --- slots, private keys, fields, codes ---------------------------------------------

INVALID_SLOTS = VECTORS["invalid"]["slots"]


@pytest.mark.parametrize("vector", INVALID_SLOTS, ids=_ids(INVALID_SLOTS))
def test_invalid_slot(vector: dict[str, Any]) -> None:
    record = bytes.fromhex(vector["record"])
    credential = vector["credential"].encode("utf-8")
    context = bytes.fromhex(vector["context"])
    with pytest.raises(OURS[vector["expect"]]):
        our_unlock(record, credential, context)
    with pytest.raises(THEIRS[vector["expect"]]):
        reader.unlock_slot(record, credential, context, **CEILING)


INVALID_KEYS = VECTORS["invalid"]["private_keys"]


@pytest.mark.parametrize("vector", INVALID_KEYS, ids=_ids(INVALID_KEYS))
def test_invalid_private_key(vector: dict[str, Any]) -> None:
    args = (
        bytes.fromhex(vector["account_key"]),
        bytes.fromhex(vector["sealed"]),
        bytes.fromhex(vector["key_id"]),
    )
    with pytest.raises(OURS[vector["expect"]]):
        open_private_key(*args)
    with pytest.raises(THEIRS[vector["expect"]]):
        reader.open_private_key(*args)


@pytest.mark.parametrize("vector", VECTORS["fields"], ids=_ids(VECTORS["fields"]))
def test_valid_field(vector: dict[str, Any]) -> None:
    data_key = bytes.fromhex(ACCOUNTS[vector["account"]]["data_key"])
    sealed = bytes.fromhex(vector["sealed"])
    context = vector["context"].encode("ascii")
    value = bytes.fromhex(vector["value"])
    fields = FieldCipher(data_key)
    assert fields.open(sealed, context) == value
    assert reader.open_field(data_key, sealed, context) == value
    assert fields.lookup(value, context).hex() == vector["lookup"]
    assert reader.field_lookup(data_key, value, context).hex() == vector["lookup"]


INVALID_FIELDS = VECTORS["invalid"]["fields"]


@pytest.mark.parametrize("vector", INVALID_FIELDS, ids=_ids(INVALID_FIELDS))
def test_invalid_field(vector: dict[str, Any]) -> None:
    data_key = bytes.fromhex(ACCOUNTS[vector["account"]]["data_key"])
    sealed = bytes.fromhex(vector["sealed"])
    context = vector["context"].encode("ascii")
    with pytest.raises(OURS[vector["expect"]]):
        FieldCipher(data_key).open(sealed, context)
    with pytest.raises(THEIRS[vector["expect"]]):
        reader.open_field(data_key, sealed, context)


@pytest.mark.parametrize("vector", VECTORS["codes"], ids=_ids(VECTORS["codes"], "input"))
def test_codes(vector: dict[str, Any]) -> None:
    assert normalize_code(vector["input"]) == vector["normalized"]
    assert reader.normalize_code(vector["input"]) == vector["normalized"]
    if vector["normalized"] is not None:
        assert code_lookup_id(vector["normalized"]).hex() == vector["lookup_id"]
        assert reader.code_lookup_id(vector["normalized"]).hex() == vector["lookup_id"]


def test_the_set_has_what_docs_security_md_promises() -> None:
    sealed = [b for b in VECTORS["blobs"] if b["id"] != "plain"]
    combos = {(b["curve"], b["chunk_size"], b["size"]) for b in sealed}
    assert combos == {
        (curve, chunk, size)
        for curve in ("x25519", "prime256v1", "secp384r1", "secp521r1")
        for chunk in (4096, 65536)
        for size in (0, 1, 5000, 70000)
    }
    for kind in ("slots", "fields", "private_keys", "blobs"):
        assert VECTORS["invalid"][kind], kind


# --- the current formats: made now by cryptmail.crypto, opened by the reader ----------
#
# vectors.json predates the label separation (blob version 1, field versions 1 and 2);
# the version-3 objects cryptmail writes now are checked against the independent reader
# here, since their ephemeral keys and nonces are random anyway.


@pytest.mark.parametrize("curve", sorted(ACCOUNTS))
def test_current_blobs_open_in_the_reader(curve: str) -> None:
    pkcs8 = _private(curve)
    ours = load_private_key(pkcs8)
    blob_id = bytes(range(16))
    plaintext = plaintext_of(5000)
    sealer = BlobSealer(public_info(ours), blob_id)
    blob = sealer.header + sealer.update(plaintext) + sealer.finalize()
    assert blob[6] == 3
    assert reader.open_blob(blob, blob_id, reader.load_private_key(pkcs8)) == plaintext
    with pytest.raises(reader.Failed):
        reader.open_blob(blob[:6] + b"\x01" + blob[7:], blob_id, reader.load_private_key(pkcs8))


def test_current_fields_open_in_the_reader() -> None:
    account = ACCOUNTS["x25519"]
    data_key = bytes.fromhex(account["data_key"])
    later = {1: bytes(range(32))}
    context_ = context("cm_mailboxes.name_sealed", 17)
    for keys in ({}, later):
        sealed = FieldCipher(data_key, keys).seal(b"Projects/2026", context_)
        assert sealed[0] == 3
        opened = reader.open_field_v3({0: data_key, **keys}, sealed, context_)
        assert opened == b"Projects/2026"
        with pytest.raises(reader.Failed):
            reader.open_field_v2({0: data_key, **keys}, b"\x02" + sealed[1:], context_)


def test_current_sealed_boxes_open_in_the_reader() -> None:
    pkcs8 = _private("prime256v1")
    ours = load_private_key(pkcs8)
    info = public_info(ours)
    context_ = context("cm_key_events.detail_sealed", 5)
    detail = info.key_id + seal_box(b'{"ip": "192.0.2.1"}', info, context_)
    theirs = reader.load_private_key(pkcs8)
    assert reader.open_box(detail, theirs, context_) == b'{"ip": "192.0.2.1"}'
    with pytest.raises(reader.Failed):
        reader.open_box(detail, theirs, context("cm_key_events.detail_sealed", 6))

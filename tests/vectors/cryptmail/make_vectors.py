"""Write tests/vectors/cryptmail/vectors.json: vectors for our blob, slot and field formats.

Run once (`python tests/vectors/cryptmail/make_vectors.py`) when a format version is
added; the tests never rerun it. Keys, account keys, message keys, blob ids and salts
are fixed, but every ECIES wrap draws a fresh ephemeral key and every AEAD seal outside
STREAM a fresh nonce, so a second run writes different bytes: the file holds outputs
to be read, not a recipe to regenerate and compare. docs/security.md ("Test vectors")
describes the layout; `independent_reader.py` and `cryptmail.crypto` must both accept
every valid vector and refuse every invalid one with the error it names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from cryptmail.crypto import (
    Argon2Params,
    CurveName,
    FieldCipher,
    PrivateKey,
    SlotLabel,
    code_lookup_id,
    curve_names,
    derive_data_key,
    derive_slot_key,
    normalize_code,
    parse_blob_header,
    plain_header,
    public_info,
    seal_data_key,
    seal_private_key,
)
from cryptmail.crypto._keypair import serialize_private_key
from cryptmail.crypto._slots import seal_slot
from cryptmail.crypto._slots_v1 import _lock_slot
from cryptmail.crypto._stream import BlobSealer

OUT = Path(__file__).with_name("vectors.json")
CHUNK_SIZES = (4096, 65536)
SIZES = (0, 1, 5000, 70000)
PASSWORD = "correct horse battery staple, ünïcödé"
RECOVERY_CODE = "QWERT-YUIOP-ASDFG-HJKLZ-XCVBN-M2345-67ABC-DEFGH"
APP_PASSWORD = "abcde-fghij-klmno-pqrst"
APP_NAME = "Thunderbird on the laptop"
SLOT_PARAMS = Argon2Params(memory_kib=64, time_cost=1, parallelism=1)
SLOT_PARAMS_LANES = Argon2Params(memory_kib=256, time_cost=2, parallelism=2)
CEILING = {"max_memory_kib": 1048576, "max_time_cost": 16}
_NIST: dict[str, ec.EllipticCurve] = {
    "prime256v1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}


def digest(*parts: str) -> bytes:
    return hashlib.sha256("|".join(("cryptmail test vectors", *parts)).encode()).digest()


def fixed_private_key(curve: CurveName, label: str) -> PrivateKey:
    seed = digest("private key", curve, label)
    if curve == "x25519":
        return x25519.X25519PrivateKey.from_private_bytes(seed)
    # 31 bytes stay below the order of every NIST curve we use.
    return ec.derive_private_key(int.from_bytes(seed[:31], "big"), _NIST[curve])


def plaintext_of(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def slot_context(account_uuid: bytes, kind: str, name: str) -> bytes:
    return account_uuid + b"|" + kind.encode() + b"|" + name.encode("utf-8")


# --- accounts -------------------------------------------------------------------------


def make_account(curve: CurveName) -> dict[str, Any]:
    account_uuid = digest("account uuid", curve)[:16]
    account_key = digest("account key", curve)
    key = fixed_private_key(curve, "primary")
    info = public_info(key)
    recovery = normalize_code(RECOVERY_CODE)
    app = normalize_code(APP_PASSWORD)
    assert recovery is not None and app is not None
    slots = []
    for kind, name, credential, params in (
        ("password", "", PASSWORD.encode("utf-8"), SLOT_PARAMS),
        ("recovery", "", recovery.encode(), SLOT_PARAMS_LANES),
        ("app", APP_NAME, app.encode(), SLOT_PARAMS),
    ):
        context = slot_context(account_uuid, kind, name)
        salt = digest("slot salt", curve, kind)[:16]
        record = _lock_slot(account_key, credential, params, context, salt)
        slots.append(
            {
                "kind": kind,
                "name": name,
                "credential": credential.decode("utf-8"),
                "context": context.hex(),
                "record": record.hex(),
            }
        )
    other = fixed_private_key(curve, "other")
    # Generation 1, as a re-key leaves it: version-2 slots, both data keys sealed under
    # the new account key, the old private key sealed again, and a field under data key 1.
    key_1 = digest("account key 1", curve)
    data_keys = {0: derive_data_key(account_key), 1: digest("data key 1", curve)}
    slots_v2 = []
    for slot in slots:
        kind, name = str(slot["kind"]), str(slot["name"])
        params = SLOT_PARAMS_LANES if kind == "recovery" else SLOT_PARAMS
        salt = digest("slot salt v2", curve, kind)[:16]
        public = derive_slot_key(str(slot["credential"]).encode("utf-8"), params, salt).public
        record = seal_slot(key_1, public, SlotLabel(account_uuid, kind, name, 1))
        slots_v2.append({**slot, "generation": 1, "record": record.hex()})
        del slots_v2[-1]["context"]
    field_1 = FieldCipher(data_keys[0], {1: data_keys[1]}).seal(
        b"INBOX/Projects", b"mailbox-name|1"
    )
    generation_1 = {
        "account_key": key_1.hex(),
        "slots": slots_v2,
        "data_keys": [
            {"generation": g, "data_key": k.hex(), "sealed": seal_data_key(key_1, k, g).hex()}
            for g, k in sorted(data_keys.items())
        ],
        "private_sealed": seal_private_key(key_1, key, info.key_id).hex(),
        "field": {"context": "mailbox-name|1", "value": "INBOX/Projects", "sealed": field_1.hex()},
    }
    return {
        "curve": curve,
        "account_uuid": account_uuid.hex(),
        "account_key": account_key.hex(),
        "data_key": derive_data_key(account_key).hex(),
        "public_key": info.encoded.hex(),
        "key_id": info.key_id.hex(),
        "private_key_pkcs8": serialize_private_key(key).hex(),
        "private_sealed": seal_private_key(account_key, key, info.key_id).hex(),
        "other_private_key_pkcs8": serialize_private_key(other).hex(),
        "slots": slots,
        "generation_1": generation_1,
    }


# --- blobs ----------------------------------------------------------------------------


def make_blob(curve: CurveName, chunk_size: int, size: int) -> dict[str, Any]:
    name = f"{curve}-c{chunk_size}-n{size}"
    blob_id = digest("blob id", name)[:16]
    message_key = digest("message key", name)
    key = fixed_private_key(curve, "primary")
    sealer = BlobSealer._from_parts(message_key, public_info(key), blob_id, chunk_size)
    plaintext = plaintext_of(size)
    blob = sealer.header + sealer.update(plaintext) + sealer.finalize()
    return {
        "id": name,
        "curve": curve,
        "chunk_size": chunk_size,
        "size": size,
        "blob_id": blob_id.hex(),
        "message_key": message_key.hex(),
        "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
        "blob": b64(blob),
    }


def make_plain_blob() -> dict[str, Any]:
    plaintext = b"From: alice@example.org\r\nSubject: plain\r\n\r\nStored with crypt = 0.\r\n"
    return {
        "id": "plain",
        "blob_id": digest("blob id", "plain")[:16].hex(),
        "size": len(plaintext),
        "plaintext": plaintext.decode("ascii"),
        "blob": b64(plain_header() + plaintext),
    }


def off_curve_point(curve: CurveName) -> bytes:
    """A compressed NIST encoding whose x has no point (found by trying small x)."""
    size = {"prime256v1": 32, "secp384r1": 48, "secp521r1": 66}[curve]
    for x in range(1, 100):
        encoded = b"\x02" + x.to_bytes(size, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(_NIST[curve], encoded)
        except ValueError:
            return encoded
    raise AssertionError("no off-curve x below 100")


def blob_negatives(base: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    """Invalid blobs as edits of `base` (a multi-chunk blob at chunk size 4096)."""
    blob = base64.b64decode(base["blob"])
    header = parse_blob_header(blob)
    assert header.wrapped is not None
    h = header.size
    stride = header.chunk_size + 16
    n = header.chunk_count(len(blob))
    end = len(blob)
    assert n >= 5

    def chunk(i: int) -> list[int]:
        return [h + i * stride, min(end, h + (i + 1) * stride)]

    eph = len(header.wrapped.ephemeral)
    eph_at = 6 + 3 + 32 + 1
    wlen_at = eph_at + eph
    wrapped_at = wlen_at + 1
    log2_at = h - 1
    cases: list[tuple[str, list[dict[str, Any]], dict[str, Any], str]] = []
    failed, malformed = "DecryptionFailed", "MalformedObject"

    def flip(name: str, offset: int, bit: int, expect: str = failed) -> None:
        cases.append((name, [{"op": "flip", "offset": offset, "bit": bit}], {}, expect))

    def segments(name: str, parts: list[Any], expect: str = failed) -> None:
        cases.append((name, [{"op": "segments", "segments": parts}], {}, expect))

    flip("flipped bit in key_id", 9, 0)
    flip("flipped bit in the ephemeral key", eph_at + eph - 1, 3)
    flip("flipped bit in the wrapped key", wrapped_at, 7)
    flip("flipped bit in the wrapped key's tag", wrapped_at + 47, 1)
    flip("flipped bit in chunk 0's data", h, 0)
    flip("flipped bit in chunk 3's data", h + 3 * stride + 100, 5)
    flip("flipped bit in chunk 0's tag", h + stride - 1, 6)
    flip("flipped bit in the last tag", end - 1, 0)
    flip("chunk_log2 changed within range", log2_at, 0)
    segments("truncated at chunk boundary 1", [[0, h + stride]])
    segments("last chunk dropped (no final flag)", [[0, h + (n - 1) * stride]])
    segments("truncated mid-chunk", [[0, h + 2 * stride + 1000]])
    segments("truncated inside a tag", [[0, h + stride - 5]])
    segments("truncated one byte short", [[0, end - 1]])
    segments("header only", [[0, h]])
    segments("chunks 0 and 1 swapped", [[0, h], chunk(1), chunk(0), [h + 2 * stride, end]])
    segments(
        "last two chunks swapped",
        [[0, h + (n - 2) * stride], chunk(n - 1), chunk(n - 2)],
    )
    segments("chunk 2 duplicated", [[0, h + 3 * stride], chunk(2), [h + 3 * stride, end]])
    segments("chunk 4 dropped", [[0, h + 4 * stride], [h + 5 * stride, end]])
    segments("chunk 0 appended", [[0, end], chunk(0)])
    segments("last chunk appended again", [[0, end], chunk(n - 1)])
    segments("empty tag-sized chunk appended", [[0, end], {"hex": "00" * 16}])
    segments(
        "wrapped key 47 bytes long",
        [[0, wlen_at], {"hex": "2f"}, [wrapped_at, wrapped_at + 47], [wrapped_at + 48, end]],
    )
    segments(
        "wrapped key 49 bytes long",
        [
            [0, wlen_at],
            {"hex": "31"},
            [wrapped_at, wrapped_at + 48],
            {"hex": "00"},
            [wrapped_at + 48, end],
        ],
    )
    bad_eph = bytes(32) if base["curve"] == "x25519" else off_curve_point(base["curve"])
    segments(
        "invalid ephemeral key (low order or off the curve)",
        [[0, eph_at - 1], {"hex": f"{len(bad_eph):02x}" + bad_eph.hex()}, [wlen_at, end]],
    )
    other_blob = base64.b64decode(other["blob"])
    other_header = parse_blob_header(other_blob)
    segments(
        "header of another blob",
        [{"hex": other_header.raw.hex()}, [h, end]],
    )
    # Header garbage: not a blob we can parse at all.
    flip("magic changed", 0, 5, malformed)
    segments("version 2", [[0, 6], {"hex": "02"}, [7, end]], malformed)
    segments("mode 2", [[0, 7], {"hex": "02"}, [8, end]], malformed)
    segments("curve id 0", [[0, 8], {"hex": "00"}, [9, end]], malformed)
    segments("curve id 5", [[0, 8], {"hex": "05"}, [9, end]], malformed)
    segments("chunk_log2 11", [[0, log2_at], {"hex": "0b"}, [h, end]], malformed)
    segments("chunk_log2 25", [[0, log2_at], {"hex": "19"}, [h, end]], malformed)
    segments("header cut short", [[0, h - 1]], malformed)
    segments("empty blob", [], malformed)

    out = []
    for name, edits, extra, expect in cases:
        out.append({"name": name, "base": base["id"], "edits": edits, **extra, "expect": expect})
    # The right bytes, but the wrong context or key.
    out.append(
        {
            "name": "blob id of another blob",
            "base": base["id"],
            "edits": [],
            "blob_id": other["blob_id"],
            "expect": failed,
        }
    )
    out.append(
        {
            "name": "wrong private key (same curve)",
            "base": base["id"],
            "edits": [],
            "key": "other",
            "expect": failed,
        }
    )
    out.append(
        {
            "name": "wrong cached message key",
            "base": base["id"],
            "edits": [],
            "message_key": other["message_key"],
            "expect": failed,
        }
    )
    for entry in out:
        entry["sha256"] = hashlib.sha256(apply_edits(blob, entry["edits"])).hexdigest()
    return out


def apply_edits(blob: bytes, edits: list[dict[str, Any]]) -> bytes:
    for edit in edits:
        if edit["op"] == "flip":
            data = bytearray(blob)
            data[edit["offset"]] ^= 1 << edit["bit"]
            blob = bytes(data)
        else:
            pieces = []
            for part in edit["segments"]:
                pieces.append(
                    bytes.fromhex(part["hex"])
                    if isinstance(part, dict)
                    else blob[part[0] : part[1]]
                )
            blob = b"".join(pieces)
    return blob


# --- slots, fields, codes -------------------------------------------------------------


def slot_negatives(account: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    slot = account["slots"][0]
    record = bytes.fromhex(slot["record"])
    context = slot["context"]
    credential = slot["credential"]

    def flipped(offset: int, bit: int) -> str:
        data = bytearray(record)
        data[offset] ^= 1 << bit
        return bytes(data).hex()

    def with_params(memory_kib: int, time_cost: int, parallelism: int) -> str:
        return (struct.pack(">BIIB", 1, memory_kib, time_cost, parallelism) + record[10:]).hex()

    failed, malformed, refused = "DecryptionFailed", "MalformedObject", "KdfParametersRefused"
    cases = [
        ("wrong password", record.hex(), credential + " ", context, failed),
        ("empty password", record.hex(), "", context, failed),
        (
            "relabelled as the recovery slot",
            record.hex(),
            credential,
            (bytes.fromhex(account["account_uuid"]) + b"|recovery|").hex(),
            failed,
        ),
        (
            "copied to another account",
            record.hex(),
            credential,
            other["slots"][0]["context"],
            failed,
        ),
        ("flipped bit in the salt", flipped(12, 0), credential, context, failed),
        ("flipped bit in the nonce", flipped(30, 4), credential, context, failed),
        ("flipped bit in the sealed key", flipped(40, 7), credential, context, failed),
        ("flipped bit in the tag", flipped(85, 2), credential, context, failed),
        ("time cost changed", with_params(64, 2, 1), credential, context, failed),
        ("version 2", "02" + record[1:].hex(), credential, context, malformed),
        ("version 0", "00" + record[1:].hex(), credential, context, malformed),
        ("one byte short", record[:-1].hex(), credential, context, malformed),
        ("one byte long", record.hex() + "00", credential, context, malformed),
        ("memory above the ceiling", with_params(1048577, 1, 1), credential, context, refused),
        ("a planted 4 TiB slot", with_params(0xFFFFFFFF, 1, 1), credential, context, refused),
        ("time cost above the ceiling", with_params(64, 17, 1), credential, context, refused),
        ("no lanes", with_params(64, 1, 0), credential, context, refused),
        ("65 lanes", with_params(1024, 1, 65), credential, context, refused),
        ("memory below 8 KiB per lane", with_params(15, 1, 2), credential, context, refused),
    ]
    return [
        {"name": name, "record": rec, "credential": cred, "context": ctx, "expect": expect}
        for name, rec, cred, ctx, expect in cases
    ]


FIELD_VALUES: list[tuple[str, bytes, bytes]] = [
    ("folder name", "Projekte/2025 – Q1".encode(), b"mailbox-name|17"),
    ("flags, padded to 32 bytes", b'["\\\\Flagged","\\\\Seen"]' + b" " * 10, b"flags|4711"),
    (
        "message cache record with a message key",
        b"\x01\x01" + (70000).to_bytes(8, "big") + bytes(range(32)) + b"envelope",
        b"cache|4711",
    ),
    ("empty value", b"", b"flags|1"),
]


def make_fields(account: dict[str, Any]) -> list[dict[str, Any]]:
    fields = FieldCipher(bytes.fromhex(account["data_key"]))
    return [
        {
            "name": name,
            "account": account["curve"],
            "context": context.decode("ascii"),
            "value": value.hex(),
            "sealed": fields.seal(value, context).hex(),
            "lookup": fields.lookup(value, context).hex(),
        }
        for name, value, context in FIELD_VALUES
    ]


def field_negatives(field: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    sealed = bytes.fromhex(field["sealed"])

    def flipped(offset: int, bit: int) -> str:
        data = bytearray(sealed)
        data[offset] ^= 1 << bit
        return bytes(data).hex()

    base = {"account": field["account"], "context": field["context"]}
    cases = [
        ("moved to another row", {"context": "mailbox-name|18"}),
        ("moved to another column", {"context": "flags|17"}),
        ("another user's data key", {"account": other["curve"]}),
        ("flipped bit in the version", {"sealed": flipped(0, 1)}),
        ("flipped bit in the nonce", {"sealed": flipped(5, 0)}),
        ("flipped bit in the ciphertext", {"sealed": flipped(14, 3)}),
        ("flipped bit in the tag", {"sealed": flipped(len(sealed) - 1, 7)}),
        ("version 2", {"sealed": "02" + sealed[1:].hex()}),
        ("shorter than 29 bytes", {"sealed": sealed[:28].hex()}),
        ("empty", {"sealed": ""}),
        ("tag cut off", {"sealed": sealed[:-16].hex()}),
    ]
    return [
        {"name": name, **base, "sealed": field["sealed"], **change, "expect": "DecryptionFailed"}
        for name, change in cases
    ]


def private_key_negatives(account: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    sealed = bytes.fromhex(account["private_sealed"])
    flipped = bytearray(sealed)
    flipped[20] ^= 0x10
    base = {"account_key": account["account_key"], "key_id": account["key_id"]}
    cases = [
        ("another key's id", {"key_id": other["key_id"]}),
        ("another account's key", {"account_key": other["account_key"]}),
        ("the data key instead of the account key", {"account_key": account["data_key"]}),
        ("flipped bit", {"sealed": bytes(flipped).hex()}),
        ("truncated to the nonce", {"sealed": sealed[:12].hex()}),
    ]
    return [
        {
            "name": name,
            **base,
            "sealed": account["private_sealed"],
            **change,
            "expect": "DecryptionFailed",
        }
        for name, change in cases
    ]


def make_codes() -> list[dict[str, Any]]:
    inputs = [
        RECOVERY_CODE,
        RECOVERY_CODE.lower().replace("-", " "),
        APP_PASSWORD,
        " 0ol18-2345a ",
        "abcd",
        "abcde-fghi9",
        "",
    ]
    out = []
    for text in inputs:
        normalized = normalize_code(text)
        out.append(
            {
                "input": text,
                "normalized": normalized,
                "lookup_id": code_lookup_id(normalized).hex() if normalized else None,
            }
        )
    return out


def main() -> int:
    curves = curve_names()
    accounts = {curve: make_account(curve) for curve in curves}
    blobs = [make_blob(c, chunk, size) for c in curves for chunk in CHUNK_SIZES for size in SIZES]
    by_id = {blob["id"]: blob for blob in blobs}
    invalid_blobs: list[dict[str, Any]] = []
    for curve in curves:
        base = by_id[f"{curve}-c4096-n70000"]
        invalid_blobs += blob_negatives(base, by_id[f"{curve}-c4096-n5000"])
        other_curve = curves[(curves.index(curve) + 1) % len(curves)]
        invalid_blobs.append(
            {
                "name": f"private key on another curve ({other_curve})",
                "base": base["id"],
                "edits": [],
                "key": other_curve,
                "expect": "DecryptionFailed",
                "sha256": hashlib.sha256(base64.b64decode(base["blob"])).hexdigest(),
            }
        )
    fields = make_fields(accounts["x25519"]) + make_fields(accounts["secp521r1"])
    document = {
        "about": (
            "cryptmail format vectors (docs/security.md, 'Test vectors'). Written once by "
            "make_vectors.py; read by test_cryptmail_vectors.py with cryptmail.crypto and "
            "with independent_reader.py. Bytes are hex, blobs base64."
        ),
        "plaintext": "byte i of an n-byte plaintext is i mod 251",
        "argon2_ceiling": CEILING,
        "accounts": accounts,
        "blobs": [make_plain_blob(), *blobs],
        "fields": fields,
        "codes": make_codes(),
        "invalid": {
            "blobs": invalid_blobs,
            "slots": slot_negatives(accounts["x25519"], accounts["prime256v1"])
            + slot_negatives(accounts["secp521r1"], accounts["x25519"])[:3],
            "fields": field_negatives(fields[0], accounts["prime256v1"]),
            "private_keys": private_key_negatives(accounts["x25519"], accounts["secp384r1"])
            + private_key_negatives(accounts["prime256v1"], accounts["x25519"])[:2],
        },
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The little DER that Dovecot's formats need: OIDs and a compressed-point SPKI.

`cryptography` parses DER for us but cannot emit an SPKI with a compressed EC point,
which is what Dovecot's key ids hash (spec §4.1), and it has no call that encodes a bare
OBJECT IDENTIFIER, which stream headers store (spec §3.2).
"""

from __future__ import annotations

from cryptmail.crypto.dovecot._constants import OID_EC_PUBLIC_KEY
from cryptmail.errors import DovecotFormatError

_TAG_SEQUENCE = 0x30
_TAG_BIT_STRING = 0x03
_TAG_OID = 0x06


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def encode_oid(dotted: str) -> bytes:
    """DER of the OBJECT IDENTIFIER `dotted` ("2.16.840..."), tag and length included."""
    try:
        arcs = [int(arc) for arc in dotted.split(".")]
    except ValueError:
        raise DovecotFormatError(f"{dotted!r} is not a dotted object identifier") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise DovecotFormatError(f"{dotted!r} is not a valid object identifier")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        septets = [arc & 0x7F]
        arc >>= 7
        while arc:
            septets.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(septets))
    return _tlv(_TAG_OID, bytes(body))


def decode_oid(data: bytes, offset: int = 0) -> tuple[str, int]:
    """Read one DER OBJECT IDENTIFIER at `offset`; return its dotted text and the end offset.

    Raises DovecotFormatError if the bytes there are not a minimal DER OID.
    """
    if offset + 2 > len(data) or data[offset] != _TAG_OID:
        raise DovecotFormatError("expected a DER object identifier in the stream header")
    size = data[offset + 1]
    # OIDs of ciphers and hashes are short; a long-form length here means garbage.
    if size == 0 or size >= 0x80 or offset + 2 + size > len(data):
        raise DovecotFormatError("bad object identifier length in the stream header")
    body = data[offset + 2 : offset + 2 + size]
    if body[-1] & 0x80:
        raise DovecotFormatError("truncated object identifier in the stream header")
    arcs: list[int] = []
    value = 0
    start = True
    for byte in body:
        if start and byte == 0x80:
            raise DovecotFormatError("non-minimal object identifier in the stream header")
        value = (value << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:]), offset + 2 + size


def compressed_ec_spki(curve_oid: str, compressed_point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of an EC key, with the point as given (compressed)."""
    algorithm = _tlv(_TAG_SEQUENCE, encode_oid(OID_EC_PUBLIC_KEY) + encode_oid(curve_oid))
    return _tlv(_TAG_SEQUENCE, algorithm + _tlv(_TAG_BIT_STRING, b"\x00" + compressed_point))

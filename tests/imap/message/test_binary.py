"""BINARY output, part by part; expected bytes are Dovecot 2.3's answers to the same."""

from __future__ import annotations

import pytest

from cryptmail.imap.message import analyze_message
from cryptmail.imap.message._binary import (
    BinaryStream,
    BrokenEncoding,
    UnknownEncoding,
    binary_headers,
    plan_binary,
    transfer_encoding,
)

MULTI = (
    b"Subject: b\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =\r\nsoft\r\n--z\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAwQ=\r\n--z\r\n"
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--z--\r\n"
)


def binary(
    message: bytes, path: tuple[int, ...], partial: tuple[int, int] | None = None, step: int = 3
) -> tuple[bytes, bool]:
    """(output, literal8) with stored bytes fed `step` at a time (chunk borders anywhere)."""
    part_map = analyze_message(message).part_map
    headers = {
        i: message[p.header_offset : p.body_offset]
        for i in binary_headers(part_map, path)
        for p in [part_map.parts[i]]
    }
    plan = plan_binary(part_map, path, headers)
    if plan is None:
        return b"", False
    skip, size = partial if partial else (0, None)
    stream = BinaryStream(skip, size)
    out = bytearray()
    for segment in plan.segments:
        out += stream.begin(segment)
        data = message[segment.offset : segment.offset + segment.length]
        for start in range(0, len(data), step):
            out += stream.feed(data[start : start + step])
        out += stream.end()
    return bytes(out), plan.decoded or stream.has_nul


@pytest.mark.parametrize("step", [1, 2, 5, 4096])
def test_dovecot_answers(step: int) -> None:
    single = b"Subject: a\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8Ad29ybGQ=\r\n"
    assert binary(single, (), step=step) == (
        b"Subject: a\r\nContent-Transfer-Encoding: binary\r\n\r\nhello\0world",
        True,
    )
    assert binary(single, (1,), step=step) == (b"hello\0world", True)
    assert binary(single, (1,), (2, 5), step=step) == (b"llo\0w", True)
    assert binary(MULTI, (1,), step=step) == ("café soft".encode(), True)
    assert binary(MULTI, (2,), step=step) == (b"\0\1\2\3\4", True)
    assert binary(MULTI, (3,), step=step) == (b"Subject: inner\r\n\r\ninner body", False)
    assert binary(MULTI, (3, 1), step=step) == (b"inner body", False)
    assert binary(MULTI, (9,), step=step) == (b"", False)
    assert binary(MULTI, (), step=step) == (
        b"Subject: b\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + "café soft".encode()
        + b"\r\n--z\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\0\1\2\3\4\r\n--z\r\n"
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--z--\r\n",
        True,
    )
    first = b"Content-Transfer-Encoding: BASE64\r\nSubject: a\r\nX-Y: z\r\n\r\naGVsbG8Ad29ybGQ=\r\n"
    assert binary(first, (), step=step)[0] == (
        b"Subject: a\r\nX-Y: z\r\nContent-Transfer-Encoding: binary\r\n\r\nhello\0world"
    )
    assert binary(first, (), (5, 20), step=step)[0] == b"ct: a\r\nX-Y: z\r\nConte"
    eight = b"Subject: g\r\nContent-Transfer-Encoding: 8bit\r\n\r\nplain\nbare lf\r\n"
    assert binary(eight, (1,), step=step) == (b"plain\r\nbare lf\r\n", False)
    nul = b"Subject: c\r\nContent-Transfer-Encoding: 7bit\r\n\r\nnul\0byte\r\n"
    assert binary(nul, (1,), step=step) == (b"nul\0byte\r\n", True)
    assert binary(nul, (), step=step) == (nul, True)
    qp = (
        b"Subject: g\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"soft=\r\nbreak =3D end=\r\n"
    )
    assert binary(qp, (1,), step=step) == (b"softbreak = end", True)
    spaced = b"Subject: e\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n\r\n"
    assert binary(spaced, (1,), step=step)[0] == b"hello"
    blank = b"Subject: h\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs bG8=\r\n"
    assert binary(blank, (1,), step=step)[0] == b"hello"
    prefix = (
        b"Subject: d\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\npre\r\n--z\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\nYWJj\r\n--z--\r\n"
        b"post\r\n"
    )
    assert binary(prefix, (), step=step)[0] == (
        b"Subject: d\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\npre\r\n--z\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nabc\r\n--z--\r\n"
        b"post\r\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"!!!!not base64***\r\n",
        b"aGVsbG8=aGVsbG8=\r\n",
        b"aGVsbG8=\r\n=\r\n",
        b"aGVsbG8\r\n",  # a cut quantum (Dovecot fails on it too)
        b"a===\r\n",
    ],
)
@pytest.mark.parametrize("step", [1, 3, 4096])
def test_broken_base64(body: bytes, step: int) -> None:
    message = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    with pytest.raises(BrokenEncoding):
        binary(message, (1,), step=step)


@pytest.mark.parametrize("body", [b"bad =ZZ qp\r\n", b"cut =4", b"=\xff0\r\n"])
def test_broken_quoted_printable(body: bytes) -> None:
    message = b"Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    with pytest.raises(BrokenEncoding):
        binary(message, (1,))


def test_unknown_encoding_anywhere_in_the_answer() -> None:
    message = b"Subject: c\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    with pytest.raises(UnknownEncoding):
        binary(message, (1,))
    nested = MULTI.replace(b"base64", b"x-gzip64")
    with pytest.raises(UnknownEncoding):
        binary(nested, ())
    assert binary(nested, (1,))[0] == "café soft".encode()  # other parts still work


def test_long_quoted_printable_line_is_decoded_in_pieces() -> None:
    line = b"=41" * 100_000 + b"b" * 7 + b"=\r\n" + b"tail \t \r\n"
    message = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + line
    for step in (1000, 65_537):
        assert binary(message, (1,), step=step)[0] == b"A" * 100_000 + b"b" * 7 + b"tail\r\n"


def test_transfer_encoding_names() -> None:
    assert transfer_encoding(b"Subject: x\r\n\r\n") == b"7bit"
    assert transfer_encoding(b"Content-Transfer-Encoding:\n quoted-printable\nX: y\n\n") == (
        b"quoted-printable"
    )
    assert transfer_encoding(b"content-transfer-encoding: Base64 (comment)\r\n\r\n") == b"base64"

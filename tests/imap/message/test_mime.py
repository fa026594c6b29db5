"""MIME analysis: Dovecot-recorded vectors, chunking invariance, part map, sections."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.imap.message._analysis import MessageAnalysis, MessageAnalyzer, analyze_message
from cryptmail.imap.message._mime import HEADER_LINE_MAX, MimeParser
from cryptmail.imap.message._partmap import PartMap, VirtualStream, _varint
from cryptmail.imap.message._sections import filter_header, header_section
from cryptmail.imap.wire._requests import Section

from ..dovecot_mime_vectors import VECTORS
from ..mime_corpus import generate_corpus, generate_message


def serve(message: bytes, analysis: MessageAnalysis, section: Section,
          partial: tuple[int, int] | None = None) -> bytes:  # fmt: skip
    plan = analysis.part_map.plan(section, partial)
    if not plan.found:
        return b""
    stored = message[plan.offset : plan.offset + plan.length]
    if plan.header_fields is not None:
        return header_section(stored, plan, partial)
    stream = VirtualStream.for_plan(plan)
    out = b"".join(stream.feed(stored[i : i + 3]) for i in range(0, len(stored), 3))
    assert len(out) == plan.size
    return out


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_dovecot_vectors(name: str) -> None:
    message, bodystructure, body, envelope = VECTORS[name]
    for chunk_size in (1, 7, 1 << 16):
        analysis = analyze_message(message, chunk_size)
        assert analysis.bodystructure == bodystructure
        assert analysis.body == body
        assert analysis.envelope == envelope


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 300))
def test_chunking_never_changes_the_analysis(seed: int, chunk_size: int) -> None:
    message = generate_message(seed)
    assert analyze_message(message, chunk_size) == analyze_message(message)


def test_sizes_add_up_for_the_corpus() -> None:
    for message in generate_corpus(3, 80):
        part_map = analyze_message(message).part_map
        assert part_map.size == len(message)
        assert part_map.vsize == len(message) + message.count(b"\n") - message.count(b"\r\n")
        for part in part_map:
            assert part.body_offset + part.body_size <= len(message)


def _varint_analysis(analysis: MessageAnalysis) -> bytes:
    """Version 1 of the cached form, as caches written before version 2 hold it."""
    out = bytearray(b"CMMA\x01")
    part_map = analysis.part_map
    values = [value for part in part_map for value in part]
    for field in (
        part_map._to_varint_bytes(values), analysis.envelope, analysis.body,
        analysis.bodystructure,
    ):  # fmt: skip
        _varint(out, len(field))
        out += field
    return bytes(out)


def test_analysis_serialisation_round_trip_and_rejections() -> None:
    analysis = analyze_message(VECTORS["multipart_mixed"][0])
    data = analysis.to_bytes()
    assert data[4] == 5
    assert analysis.sort_fields is not None
    assert MessageAnalysis.from_bytes(data) == analysis
    assert PartMap.from_bytes(analysis.part_map.to_bytes()) == analysis.part_map
    unknown = data[:4] + b"\x06" + data[5:]
    for broken in (
        data[:-1],
        data + b"x",
        b"XXXX" + data[4:],
        data[:4] + b"\x04" + data[5:],
        unknown,
    ):
        with pytest.raises(ValueError):
            MessageAnalysis.from_bytes(broken)
    mapped = analysis.part_map.to_bytes()
    for broken in (mapped[:-1], mapped + b"\x00", mapped[:5] + b"\xff\xff\xff\xff" + mapped[9:]):
        with pytest.raises(ValueError):
            PartMap.from_bytes(broken)
    raw = bytearray(mapped)
    raw[13] = 9  # the root claims nine children (bytes 9-12 are its flags)
    with pytest.raises(ValueError):
        PartMap.from_bytes(bytes(raw))


def fixed_analysis(analysis: MessageAnalysis, version: int) -> bytes:
    """Versions 2 to 4 of the cached form (four, five or six fields), as older caches
    hold them."""
    fields = [analysis.part_map.to_bytes(), analysis.envelope, analysis.body,
              analysis.bodystructure, analysis.sort_fields or b"",
              (analysis.preview or "").encode()][: version + 2]  # fmt: skip
    lengths = struct.pack(f"<{len(fields)}I", *map(len, fields))
    return b"CMMA" + bytes([version]) + lengths + b"".join(fields)


def test_version_2_caches_are_read_without_sort_fields_and_stored_back_as_version_5() -> None:
    analysis = analyze_message(VECTORS["multipart_mixed"][0])._replace(sort_fields=None)
    data = fixed_analysis(analysis, 2)
    assert MessageAnalysis.from_bytes(data) == analysis
    stored = analysis.to_bytes()
    assert stored[4] == 5 and MessageAnalysis.from_bytes(stored) == analysis
    for broken in (data[:-1], data + b"x"):
        with pytest.raises(ValueError):
            MessageAnalysis.from_bytes(broken)


def test_version_1_caches_are_still_read_and_rejected_alike() -> None:
    analysis = analyze_message(VECTORS["multipart_mixed"][0])._replace(sort_fields=None)
    data = _varint_analysis(analysis)
    assert MessageAnalysis.from_bytes(data) == analysis
    for broken in (data[:-1], data + b"x"):
        with pytest.raises(ValueError):
            MessageAnalysis.from_bytes(broken)
    values = [value for part in analysis.part_map for value in part]
    mapped = analysis.part_map._to_varint_bytes(values)
    assert PartMap.from_bytes(mapped) == analysis.part_map
    oversized = mapped[:6] + b"\xff" * 10 + b"\x01" + mapped[6:]
    for broken in (mapped[:-1], mapped + b"\x00", mapped[:-1] + b"\x80", oversized):
        with pytest.raises(ValueError):
            PartMap.from_bytes(broken)
    raw = bytearray(mapped)
    raw[7] = 9  # the root claims nine children (byte 6 is its flags)
    with pytest.raises(ValueError):
        PartMap.from_bytes(bytes(raw))


def test_a_value_beyond_32_bits_is_kept_in_the_varint_form() -> None:
    part_map = analyze_message(b"Subject: x\r\n\r\nbody\r\n").part_map
    root = part_map.parts[0]._replace(body_size=1 << 33, body_vsize=1 << 33)
    huge = PartMap((root,))
    data = huge.to_bytes()
    assert data[4] == 1
    assert PartMap.from_bytes(data) == huge
    assert PartMap.from_bytes(data).size == root.header_size + (1 << 33)


def test_sections_of_a_multipart_message() -> None:
    message = VECTORS["multipart_mixed"][0]
    analysis = analyze_message(message)
    assert serve(message, analysis, Section((1,))) == b"hello\r\nthere"
    assert serve(message, analysis, Section((1,), "MIME")) == (
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    assert serve(message, analysis, Section((2,), "HEADER")) == (
        b"From: x@y\r\nSubject: inner\r\n\r\n"
    )
    assert serve(message, analysis, Section((2,), "TEXT")) == b"inner body"
    assert serve(message, analysis, Section((2, 1))) == b"inner body"
    assert serve(message, analysis, Section((3,))) == b"AAAA"
    assert serve(message, analysis, Section((4,))) == b""  # no such part
    assert serve(message, analysis, Section((1,), "HEADER")) == b""  # not message/rfc822
    assert serve(message, analysis, Section(), (5, 10)) == message[5:15]
    assert serve(message, analysis, Section(), (10**6, 10)) == b""


def test_lf_message_is_served_with_crlf() -> None:
    message = b"Subject: a\n\nline1\nline2\n"
    analysis = analyze_message(message)
    assert serve(message, analysis, Section()) == message.replace(b"\n", b"\r\n")
    assert serve(message, analysis, Section((1,))) == b"line1\r\nline2\r\n"
    # a partial window that starts between CR and LF of a converted line end
    assert serve(message, analysis, Section((), "TEXT"), (6, 3)) == b"\nli"


def test_header_fields_two_styles() -> None:
    header = b"From: a@b\nSubject: hi\n there\nX-A: 1\nfrom: second\n\n"
    cached = filter_header(header, ["FROM", "subject"], exclude=False, cached_style=True)
    assert cached == b"From: a@b\r\nSubject: hi\r\n there\r\nfrom: second\r\n\r\n"
    raw = b"From: a@b\r\nSubject: hi"
    assert filter_header(raw, ["From"], exclude=False, cached_style=True) == (b"From: a@b\r\n\r\n")
    assert filter_header(raw, ["From"], exclude=True, cached_style=False) == b"Subject: hi"
    spaced = b"Subject:x\r\nFrom : spaced\r\nNoColon\r\n\r\n"
    assert filter_header(spaced, ["FROM"], exclude=True, cached_style=False) == (
        b"Subject:x\r\nNoColon\r\n\r\n"
    )


def test_virtual_stream_cr_at_chunk_end() -> None:
    stream = VirtualStream()
    assert stream.feed(b"a\r") + stream.feed(b"\nb\n\0") == b"a\r\nb\r\n\x80"


def test_huge_body_is_never_buffered() -> None:
    parser = MimeParser()
    parser.feed(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n")
    line = b"A" * 76 + b"\r\n"
    chunk = line * 2000
    for _ in range(40):  # about 6 MB of base64-like lines
        parser.feed(chunk)
        assert len(parser._line) <= HEADER_LINE_MAX  # white-box bound
    parser.feed(b"--x--\r\n")
    root = parser.finish()
    assert root.children[0].body.lines == 80_000 - 1


def test_one_long_line_without_newline_is_streamed() -> None:
    message = b"Subject: x\r\n\r\n" + b"B" * 3_000_000
    parser = MimeParser()
    for start in range(0, len(message), 65536):
        parser.feed(message[start : start + 65536])
        assert len(parser._line) < 100_000  # white-box bound
    root = parser.finish()
    assert root.body.physical == 3_000_000


def test_streaming_analyzer_matches_in_memory() -> None:
    message = generate_message(42)
    analyzer = MessageAnalyzer()
    for start in range(0, len(message), 11):
        analyzer.feed(message[start : start + 11])
    assert analyzer.finish() == analyze_message(message)


def test_deep_nesting_is_bounded() -> None:
    depth = 150
    head = b"".join(
        b"--x%dy\r\nContent-Type: multipart/mixed; boundary=x%dy\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    message = b"Content-Type: multipart/mixed; boundary=x0y\r\n\r\n" + head + b"x\r\n"
    analysis = analyze_message(message)
    assert len(analysis.part_map.parts) <= 101
    assert analysis.bodystructure.count(b"(") < 2000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_any_bytes_analyse_without_error(data: bytes, chunk_size: int) -> None:
    analysis = analyze_message(data, chunk_size)
    assert analysis.part_map.size == len(data)
    assert MessageAnalysis.from_bytes(analysis.to_bytes()) == analysis


_SOUP = [b"--b\r\n", b"--b--\n", b"\r\n", b"\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
         b"Content-Type: message/rfc822\n", b"MIME-Version: 1.0\r\n", b"x", b" folded\r\n", b"--",
         b"Content-Type: multipart/digest; boundary=\"b\"\r\n", b"\r"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_SOUP), max_size=40), st.integers(1, 20))
def test_mime_token_soup(pieces: list[bytes], chunk_size: int) -> None:
    message = b"".join(pieces)
    analysis = analyze_message(message, chunk_size)
    assert analysis == analyze_message(message)
    assert analysis.part_map.size == len(message)

"""Streaming MIME structure analysis that reproduces Dovecot 2.3's message parser.

:class:`MimeParser` takes a message in chunks of any size and builds the
:class:`~cryptmail.imap.message._mime_part.MessagePart` tree: offsets, header and body sizes
(physical, and "virtual" with every line ending counted as CRLF), line counts, the
multipart / message/rfc822 / text flags, Content-* data and envelopes. Body bytes are
counted in bulk and only lines that may be boundaries are looked at, so memory stays
bounded (headers up to a limit, one boundary line) whatever the message size.

Dovecot's rules kept here, because BODYSTRUCTURE shows their effects:

* a header block ends at an empty line, at a boundary line of an enclosing
  multipart (the newline before it then belongs to the parent's body), or at the end;
* Content-* headers only count when the part is MIME: it has MIME-Version or a
  Content-Type, or it sits directly in a multipart;
* a boundary line starts with ``--`` and the longest known boundary that prefixes the
  rest of the line wins; the newline before it belongs to the boundary;
* a part without Content-Type is text/plain, or message/rfc822 in multipart/digest;
* at most 100 nested and 10,000 parts in total; deeper content is plain body.

One departure: message/global (RFC 6532) in 7bit, 8bit or binary is parsed as the
message it holds, like message/rfc822 (flagged FLAG_GLOBAL), for IMAP4rev2's forms;
the rev1 writers and section lookups still treat it as the leaf Dovecot 2.3 sees.
"""

from __future__ import annotations

import re
from typing import Final

from cryptmail.imap.message._envelope import EnvelopeBuilder
from cryptmail.imap.message._mime_part import (
    FLAG_DIGEST,
    FLAG_GLOBAL,
    FLAG_IS_MIME,
    FLAG_MULTIPART,
    FLAG_RFC822,
    FLAG_TEXT,
    MessagePart,
    PartData,
)
from cryptmail.store.headers import Rfc822Reader, parse_content_params

__all__ = ["MimeParser", "parse_message"]

BOUNDARY_STRING_MAX: Final = 80
BOUNDARY_LINE_MAX: Final = BOUNDARY_STRING_MAX + 2 + 2
MAX_NESTED_PARTS: Final = 100
MAX_TOTAL_PARTS: Final = 10_000
HEADER_LINE_MAX: Final = 1 << 20
"""Header bytes kept per header field; longer values are cut (sizes stay exact)."""
_CANDIDATE_KEEP: Final = BOUNDARY_LINE_MAX + 8

_LWSP: Final = (0x20, 0x09)


class _Boundary:
    __slots__ = ("closed", "part", "text")

    def __init__(self, part: MessagePart, text: bytes) -> None:
        self.part = part
        self.text = text
        self.closed = False


class MimeParser:
    """Feed a message with :meth:`feed`, then call :meth:`finish` for the tree."""

    def __init__(self) -> None:
        self.root = MessagePart(offset=0, envelope=EnvelopeBuilder())
        self._part = self.root
        self._offset = 0  # absolute offset of the next byte to account
        self._boundaries: list[_Boundary] = []  # innermost last
        self._total_parts = 0
        # header state
        self._in_header = True
        self._hdr_name: bytes | None = None
        self._hdr_value = bytearray()
        self._hdr_lines = 0
        self._prev_hdr_nl = 0
        self._seen_content_type = False
        self._last_boundary: bytes | None = None
        self._multipart_pending = False
        # line assembly
        self._line = bytearray()
        self._line_len = 0
        self._line_open = False  # a line has started and not ended
        self._line_is_candidate = False
        self._last_cr = False  # the last byte of the open line is CR
        # body state
        self._held_nl = 0  # newline bytes held: they go to the boundary if one follows
        self._eoh_nl = 0  # newline of the empty line that just ended a header block
        self._prev_eoh_nl = 0
        self._eoh_part: MessagePart | None = None
        self._pattern_texts: tuple[bytes, ...] = ()
        self._pattern = re.compile(b"(?!)")
        self._last_byte = -1  # last body byte accounted (for CRLF across chunks)
        self._start_part_header(self.root)

    # -- public -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Account the next chunk of the message."""
        pos = 0
        end = len(data)
        while pos < end:
            if self._in_header or self._line_is_candidate:
                pos = self._feed_line(data, pos)
            elif self._line_open:
                pos = self._feed_plain_body_line(data, pos)
            else:
                pos = self._feed_body(data, pos)

    def finish(self) -> MessagePart:
        """End of input: close the open line and all parts; return the root."""
        if self._line_open and (self._in_header or self._line_is_candidate):
            self._end_line(0)
        self._end_headers_fully()
        self._commit_held_newline()
        while self._part.parent is not None:
            self._finish_part()
        return self.root

    # -- line assembly (headers and boundary candidates) --------------------------------

    def _feed_line(self, data: bytes, pos: int) -> int:
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline
        piece = data[pos:stop]
        if piece:
            if not self._line_open:
                self._line_open = True
            limit = HEADER_LINE_MAX if self._in_header else _CANDIDATE_KEEP
            room = limit - len(self._line)
            if room > 0:
                self._line += piece[:room]
            self._line_len += len(piece)
            self._last_cr = piece[-1] == 0x0D
        if newline < 0:
            return len(data)
        self._line_open = True
        if self._last_cr and self._line_len > 0:
            self._line_len -= 1
            if len(self._line) > self._line_len:
                del self._line[self._line_len :]
            self._end_line(2)
        else:
            self._end_line(1)
        return newline + 1

    def _end_line(self, newline: int) -> None:
        line = bytes(self._line)
        length = self._line_len
        self._line.clear()
        self._line_len = 0
        self._line_open = False
        self._last_cr = False
        if self._line_is_candidate:
            self._line_is_candidate = False
            self._body_candidate(line, length, newline)
        else:
            self._header_line(line, length, newline)

    # -- headers ------------------------------------------------------------------------

    def _start_part_header(self, part: MessagePart) -> None:
        self._part = part
        self._in_header = True
        self._hdr_name = None
        self._hdr_value.clear()
        self._prev_hdr_nl = 0
        self._seen_content_type = False
        self._last_boundary = None
        self._multipart_pending = False

    def _header_line(self, line: bytes, length: int, newline: int) -> None:
        part = self._part
        if self._boundaries and line[:2] == b"--":
            found = self._find_boundary(line, length, newline > 0)
            if found is not None and found.part is not part:
                if (
                    self._eoh_nl
                    and self._eoh_part is part.parent
                    and part.header.physical == 0
                    and self._eoh_part is not None
                ):
                    # The line after message/rfc822's empty line is a boundary: Dovecot
                    # gives that empty line to the boundary and starts the child on it.
                    self._move_eoh_newline(self._eoh_part)
                    part.offset -= self._prev_eoh_nl
                self._eoh_nl = 0
                self._flush_header()
                if self._prev_hdr_nl:
                    part.header.lines -= 1
                    part.header.physical -= self._prev_hdr_nl
                    part.header.virtual -= 2
                    parent = part.parent
                    assert parent is not None  # noqa: S101 -- a boundary implies a parent
                    parent.body.lines += 1
                    parent.body.physical += self._prev_hdr_nl
                    parent.body.virtual += 2
                moved = self._prev_hdr_nl
                self._end_headers_fully()
                if moved and self._part.parent is part:
                    # A message/rfc822 child starts on the newline given away above.
                    self._part.offset -= moved
                # The boundary line itself is body data of the boundary's part.
                self._boundary_reached(found, line, length, newline)
                return
        self._eoh_nl = 0
        physical = length + newline
        part.header.physical += physical
        part.header.virtual += length + (2 if newline else 0)
        if newline:
            part.header.lines += 1
        self._offset += physical
        if length == 0 and newline:
            self._flush_header()
            if self._last_boundary is not None and part.flags & FLAG_IS_MIME:
                if not self._too_nested(part):
                    self._boundaries.append(_Boundary(part, self._last_boundary))
                    self._multipart_pending = True
                else:
                    part.flags &= ~FLAG_MULTIPART
            self._end_of_headers(found_eoh=True)
            self._eoh_nl = newline
            self._eoh_part = part
            return
        self._prev_hdr_nl = newline
        if line[:1] in (b" ", b"\t") and self._hdr_name is not None:
            self._hdr_value += b"\n"
            self._hdr_value += line
            return
        self._flush_header()
        colon = line.find(b":")
        if colon < 0:
            self._hdr_name = line
            self._hdr_value = bytearray()
            return
        name_end = colon
        while name_end > 0 and line[name_end - 1] in _LWSP:
            name_end -= 1
        self._hdr_name = line[:name_end]
        value = line[colon + 1 :]
        skip = 0
        while skip < len(value) and value[skip] in _LWSP:
            skip += 1
        if skip == len(value) and value:
            skip = 1  # only whitespace: Dovecot drops just one
        self._hdr_value = bytearray(value[skip:])

    def _end_headers_fully(self) -> None:
        """End the open header block, and that of a message/rfc822 child it opens."""
        for _ in range(3):
            if not self._in_header:
                return
            self._end_of_headers(found_eoh=False)

    def _could_be_boundary(self, data: bytes, pos: int, newline: int) -> bool:
        """Cheap pre-check of a whole '-' line: does any known boundary prefix it?"""
        if data[pos + 1 : pos + 2] != b"-":
            return False
        start = pos + 2
        return any(
            data.startswith(boundary.text, start) and start + len(boundary.text) <= newline
            for boundary in self._boundaries
        )

    def _parts_exhausted(self) -> bool:
        """At 10,000 parts (the message counted) boundaries stop being recognised."""
        return self._total_parts + 1 >= MAX_TOTAL_PARTS

    def _too_nested(self, part: MessagePart) -> bool:
        return part.depth + 1 >= MAX_NESTED_PARTS

    def _flush_header(self) -> None:
        name = self._hdr_name
        if name is None:
            return
        self._hdr_name = None
        value = bytes(self._hdr_value)
        part = self._part
        lower = name.lower()
        if lower == b"mime-version":
            part.flags |= FLAG_IS_MIME
        elif lower == b"content-type":
            part.flags |= FLAG_IS_MIME
            if not self._seen_content_type:
                self._seen_content_type = True
                self._parser_content_type(part, value)
        is_content = lower.startswith(b"content-")
        parent_rfc822 = part.parent is not None and part.parent.flags & FLAG_RFC822
        if is_content or parent_rfc822:
            if part.data is None:
                part.data = PartData()
            if is_content:
                part.data.add_header(lower, value)
        if part.envelope is not None:
            part.envelope.add_header(lower, value)

    def _parser_content_type(self, part: MessagePart, value: bytes) -> None:
        reader = Rfc822Reader(value)
        reader.skip_lwsp()
        text = bytearray()
        ret = reader.content_type(text)
        lowered = bytes(text).lower()
        if lowered == b"message/rfc822":
            part.flags |= FLAG_RFC822
        elif lowered == b"message/global":
            part.flags |= FLAG_RFC822 | FLAG_GLOBAL
        elif lowered.startswith(b"text") and (len(lowered) == 4 or lowered[4:5] == b"/"):
            part.flags |= FLAG_TEXT
        elif lowered.startswith(b"multipart/"):
            part.flags |= FLAG_MULTIPART
            if lowered[10:] == b"digest":
                part.flags |= FLAG_DIGEST
        if ret < 0 or not part.flags & FLAG_MULTIPART or self._last_boundary is not None:
            return
        for key, param in parse_content_params(reader):
            if key.lower() == b"boundary":
                self._last_boundary = param[:BOUNDARY_STRING_MAX]
                break

    def _end_of_headers(self, *, found_eoh: bool) -> None:
        part = self._part
        self._flush_header()
        if not part.flags & FLAG_IS_MIME:
            part.flags = 0
            if part.data is not None:
                part.data = PartData()
        if part.data is None:
            part.data = PartData()
        self._last_boundary = None
        if not self._seen_content_type or not part.flags & FLAG_IS_MIME:
            if part.parent is not None and part.parent.flags & FLAG_DIGEST:
                part.flags |= FLAG_RFC822
            else:
                part.flags |= FLAG_TEXT
        self._in_header = False
        self._last_byte = 0x0A
        self._held_nl = 0
        if part.flags & FLAG_GLOBAL and not _identity_encoding(part.data.transfer_encoding):
            # RFC 6532 3.5 lets message/global be base64 or quoted-printable: its header
            # is then not readable as it stands, so it stays a leaf.
            part.flags &= ~(FLAG_RFC822 | FLAG_GLOBAL)
        if self._multipart_pending:
            self._multipart_pending = False
        elif part.flags & FLAG_RFC822 and not self._too_nested(part):
            child = self._append_child(part)
            child.envelope = EnvelopeBuilder()
            self._start_part_header(child)
        else:
            part.flags &= ~(FLAG_RFC822 | FLAG_GLOBAL)

    def _append_child(self, parent: MessagePart) -> MessagePart:
        child = MessagePart(offset=self._offset, parent=parent, depth=parent.depth + 1)
        parent.children.append(child)
        self._total_parts += 1
        return child

    def _finish_part(self) -> None:
        part = self._part
        parent = part.parent
        assert parent is not None  # noqa: S101 -- the root is never finished this way
        parent.body.add(part.body)
        parent.body.add(part.header)
        self._part = parent

    # -- body -----------------------------------------------------------------------------

    def _add_body(self, region: bytes) -> None:
        if not region:
            return
        body = self._part.body
        lines = region.count(b"\n")
        crlf = region.count(b"\r\n")
        if region[0] == 0x0A and self._last_byte == 0x0D:
            crlf += 1
        body.physical += len(region)
        body.virtual += len(region) + lines - crlf
        body.lines += lines
        self._offset += len(region)
        self._last_byte = region[-1]

    def _commit_held_newline(self) -> None:
        if self._held_nl:
            body = self._part.body
            body.physical += self._held_nl
            body.virtual += 2
            body.lines += 1
            self._offset += self._held_nl
            self._held_nl = 0
            self._last_byte = 0x0A

    def _feed_body(self, data: bytes, pos: int) -> int:
        """At a body line start: bulk-account lines that cannot be boundaries."""
        if self._boundaries and not self._parts_exhausted() and data[pos] == 0x2D:
            newline = data.find(b"\n", pos)
            if newline < 0 or self._could_be_boundary(data, pos, newline):
                # A '-' line may be a boundary: its held newline waits for the verdict.
                self._line_is_candidate = True
                return self._feed_line(data, pos)
        self._commit_held_newline()
        self._eoh_nl = 0
        watching = bool(self._boundaries) and not self._parts_exhausted()
        match = self._candidate_pattern().search(data, pos) if watching else None
        if match is None:
            last_nl = data.rfind(b"\n", pos)
            if last_nl < 0:
                self._add_body(data[pos:])
                self._line_open = True
                return len(data)
            self._add_region_holding_newline(data, pos, last_nl)
            rest = last_nl + 1
            if rest < len(data):
                if watching and data[rest] == 0x2D:
                    return rest  # an unfinished '-' line: decided when it is complete
                self._commit_held_newline()
                self._add_body(data[rest:])
                self._line_open = True
            return len(data)
        self._add_region_holding_newline(data, pos, match.start())
        return match.start() + 1

    def _candidate_pattern(self) -> re.Pattern[bytes]:
        """``\n--`` followed by any open boundary: the only lines worth a look."""
        texts = tuple(boundary.text for boundary in self._boundaries)
        if texts != self._pattern_texts:
            alternatives = b"|".join(re.escape(text) for text in sorted(set(texts)))
            self._pattern = re.compile(b"\n--(?:" + alternatives + b")")
            self._pattern_texts = texts
        return self._pattern

    def _add_region_holding_newline(self, data: bytes, pos: int, newline: int) -> None:
        """Account ``data[pos:newline+1]`` but hold back its final [CR]LF."""
        cut = newline
        held = 1
        if cut > pos and data[cut - 1] == 0x0D:
            cut -= 1
            held = 2
        elif cut == pos and self._last_byte == 0x0D and self._part.body.physical > 0:
            # CR came in the previous chunk: take it back into the held newline.
            self._part.body.physical -= 1
            self._part.body.virtual -= 1
            self._offset -= 1
            held = 2
        self._add_body(data[pos:cut])
        self._held_nl = held

    def _feed_plain_body_line(self, data: bytes, pos: int) -> int:
        newline = data.find(b"\n", pos)
        if newline < 0:
            self._add_body(data[pos:])
            return len(data)
        self._line_open = False
        self._add_region_holding_newline(data, pos, newline)
        return newline + 1

    def _move_eoh_newline(self, part: MessagePart) -> None:
        """Give ``part``'s header-ending empty line to its parent's body."""
        newline = self._eoh_nl
        parent = part.parent
        assert parent is not None  # noqa: S101 -- only parts inside a multipart get here
        part.header.physical -= newline
        part.header.virtual -= 2
        part.header.lines -= 1
        parent.body.physical += newline
        parent.body.virtual += 2
        parent.body.lines += 1
        self._prev_eoh_nl = newline
        self._eoh_nl = 0

    def _body_candidate(self, line: bytes, length: int, newline: int) -> None:
        found = self._find_boundary(line, length, newline > 0)
        if found is not None and self._eoh_nl and found.part is not self._part:
            self._move_eoh_newline(self._part)
        self._eoh_nl = 0
        if found is None:
            self._commit_held_newline()
            self._account_line_into(self._part, line, length, 0)
            if newline:
                self._held_nl = newline
            return
        self._boundary_reached(found, line, length, newline)

    def _account_line_into(self, part: MessagePart, line: bytes, length: int, nl: int) -> None:
        body = part.body
        body.physical += length + nl
        body.virtual += length + (2 if nl else 0)
        if nl:
            body.lines += 1
        self._offset += length + nl
        self._last_byte = 0x0A if nl else (line[length - 1] if 0 < length <= len(line) else 0)

    def _boundary_reached(self, found: _Boundary, line: bytes, length: int, nl: int) -> None:
        while self._part is not found.part:
            held = self._held_nl
            self._held_nl = 0
            self._finish_part()
            self._held_nl = held
        index = self._boundaries.index(found)
        if found.closed:
            del self._boundaries[index:]
        else:
            del self._boundaries[index + 1 :]
        part = self._part
        if self._held_nl:
            part.body.physical += self._held_nl
            part.body.virtual += 2
            part.body.lines += 1
            self._offset += self._held_nl
            self._held_nl = 0
        self._account_line_into(part, line, length, nl)
        self._last_byte = 0x0A
        if nl and self._boundaries and self._boundaries[-1].part is part:
            # (Dovecot opens the next part only once the boundary line's LF is read.)
            child = self._append_child(part)
            child.flags |= FLAG_IS_MIME
            self._start_part_header(child)
        else:
            self._in_header = False

    def _find_boundary(self, line: bytes, length: int, has_newline: bool) -> _Boundary | None:
        if self._parts_exhausted():
            return None
        rest = line[2:]
        size = length - 2
        if has_newline:
            find_size = size
            if find_size > 2 and rest[find_size - 2 : find_size] == b"--":
                find_size -= 2
        else:
            find_size = min(size, BOUNDARY_LINE_MAX)
        best: _Boundary | None = None
        for boundary in reversed(self._boundaries):
            text = boundary.text
            if len(text) <= find_size and rest.startswith(text):
                if best is None or len(best.text) < len(text):
                    best = boundary
                    if len(text) == find_size:
                        break
        if best is not None:
            blen = len(best.text)
            best.closed = size >= blen + 2 and rest[blen : blen + 2] == b"--"
        return best


def parse_message(message: bytes, chunk_size: int = 1 << 16) -> MessagePart:
    """Parse a whole message held in memory (tests and small messages)."""
    parser = MimeParser()
    view = memoryview(message)
    for start in range(0, len(message), chunk_size):
        parser.feed(bytes(view[start : start + chunk_size]))
    return parser.finish()


def _identity_encoding(encoding: bytes | None) -> bool:
    """7bit, 8bit, binary or none given: the stored bytes are the message itself."""
    return encoding is None or encoding.lower() in (b"7bit", b"8bit", b"binary")

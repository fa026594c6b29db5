"""RFC 822/2045 header value tokens, the way Dovecot 2.3 reads them.

A port of the behaviour (not the code) of Dovecot's ``rfc822-parser`` and
``rfc2231-parser``: comments and folding skipped, atoms, MIME tokens, quoted strings,
``type/subtype`` and ``; name=value`` parameters, with RFC 2231 continuations merged
but not decoded. Every quirk that shows in IMAP BODYSTRUCTURE is kept on purpose,
because clients cache what the server first said about a message.
"""

from __future__ import annotations

from typing import Final

__all__ = ["Rfc822Reader", "parse_content_params"]

_ATEXT: Final = bytes(
    (1 if c in b"!#$%&'*+-/=?^_`{|}~" or chr(c).isalnum() or c >= 0x80 else 0)
    if c < 0x80 else 1
    for c in range(256)
)  # fmt: skip
_ATEXT_SET: Final = frozenset(c for c in range(256) if _ATEXT[c] and (c >= 0x80 or c > 0x20))
_TOKEN_SET: Final = frozenset(c for c in _ATEXT_SET if c not in b"/?=") | {ord(".")}
_LWSP: Final = frozenset(b" \t\r\n")


class Rfc822Reader:
    """A cursor over one header value; methods return 1 (more input), 0 (end), -1 (error)."""

    __slots__ = ("data", "end", "last_comment", "pos")

    def __init__(self, data: bytes, *, keep_comment: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment: bytearray | None = bytearray() if keep_comment else None

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < self.end else -1

    def skip_comment(self) -> int:
        data = self.data
        level = 1
        if self.last_comment is not None:
            self.last_comment.clear()
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            char = data[self.pos]
            if char == 0x28:
                level += 1
            elif char == 0x29:
                level -= 1
                if level == 0:
                    if self.last_comment is not None:
                        self.last_comment += _nul(data[start : self.pos])
                    self.pos += 1
                    return 1 if self.pos < self.end else 0
            elif char == 0x5C:
                if self.last_comment is not None:
                    self.last_comment += _nul(data[start : self.pos])
                start = self.pos + 1
                self.pos += 1
                if self.pos >= self.end:
                    return -1
            elif char == 0x0A and self.last_comment is not None:
                # folding inside a comment: drop the [CR]LF, keep the blank after it
                end = self.pos - 1 if self.pos > start and data[self.pos - 1] == 0x0D else self.pos
                self.last_comment += _nul(data[start:end])
                start = self.pos + 1
            self.pos += 1
        return -1

    def skip_lwsp(self) -> int:
        data = self.data
        while self.pos < self.end:
            char = data[self.pos]
            if char in _LWSP:
                self.pos += 1
                continue
            if char != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < self.end else 0

    def _run(self, allowed: frozenset[int]) -> bytes:
        data = self.data
        start = pos = self.pos
        while pos < self.end and data[pos] in allowed:
            pos += 1
        self.pos = pos
        return data[start:pos]

    def atom(self, out: bytearray) -> int:
        if self.pos >= self.end or self.data[self.pos] not in _ATEXT_SET:
            return -1
        out += _cut_nul(self._run(_ATEXT_SET))
        return self.skip_lwsp() if self.pos < self.end else 0

    def dot_atom(self, out: bytearray) -> int:
        """``atext *("." atext)``; LWSP may surround dots, a dot must be followed by atext."""
        if self.pos >= self.end or self.data[self.pos] not in _ATEXT_SET:
            return -1
        while True:
            word = self._run(_ATEXT_SET)
            if not word:
                return -1
            out += _cut_nul(word)
            if self.pos >= self.end:
                return 0
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if self.data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out.append(0x2E)
            if self.skip_lwsp() <= 0:
                return -1

    def nonstrict_dot_atom(self, out: bytearray) -> int:
        """A local part that tolerates leading, trailing and doubled dots."""
        ret = -1
        while True:
            while self.data[self.pos] == 0x2E:
                out.append(0x2E)
                self.pos += 1
                if self.pos >= self.end:
                    return 0
                ret = 1
            if self.data[self.pos] == 0x40:
                return ret
            ret = self.atom(out)
            if ret <= 0 or self.data[self.pos] != 0x2E:
                return ret

    def mime_token(self, out: bytearray) -> int:
        out += _cut_nul(self._run(_TOKEN_SET))
        return self.skip_lwsp() if self.pos < self.end else 0

    def quoted_string(self, out: bytearray) -> int:
        data = self.data
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            char = data[self.pos]
            if char == 0x22:
                out += _nul(data[start : self.pos])
                self.pos += 1
                return self.skip_lwsp()
            if char == 0x0A:
                length = self.pos - start
                if length > 0 and data[start + length - 1] == 0x0D:
                    length -= 1
                out += _nul(data[start : start + length])
                start = self.pos + 1
            elif char == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                out += _nul(data[start : self.pos - 1])
                start = self.pos
            self.pos += 1
        return -1

    def _atom_or_dot(self, out: bytearray) -> int:
        out += _cut_nul(self._run(_ATEXT_SET | {0x2E}))
        return self.skip_lwsp() if self.pos < self.end else 0

    def phrase(self, out: bytearray) -> int:
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            if self.data[self.pos] == 0x22:
                ret = self.quoted_string(out)
            else:
                ret = self._atom_or_dot(out)
            if ret <= 0:
                return ret
            char = self.data[self.pos]
            if char not in _ATEXT_SET and char != 0x22 and char != 0x2E:
                break
            out.append(0x20)
        return self.skip_lwsp()

    def domain(self, out: bytearray) -> int:
        self.pos += 1  # '@'
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] != 0x5B:
            return self.dot_atom(out)
        start = self.pos
        while self.pos < self.end:
            char = self.data[self.pos]
            if char == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    break
            elif char == 0x5D:
                self.pos += 1
                out += _nul(self.data[start : self.pos])
                return self.skip_lwsp()
            self.pos += 1
        return -1

    def content_type(self, out: bytearray) -> int:
        """``type/subtype`` followed by ``;`` or the end; on junk ``out`` is emptied.

        The one exception, kept from Dovecot: a lone ``type`` at the end of the value
        stays in ``out`` (with the error return), so ``Content-Type: text`` is text.
        """
        start = len(out)
        if self.skip_lwsp() <= 0:
            return -1
        ret = self.mime_token(out)
        if ret < 0 or len(out) == start:
            del out[start:]
            return -1
        if ret == 0:
            return -1
        if self.data[self.pos] != 0x2F:
            del out[start:]
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            del out[start:]
            return -1
        out.append(0x2F)
        sub_start = len(out)
        ret = self.mime_token(out)
        if ret < 0 or len(out) == sub_start or (ret > 0 and self.data[self.pos] != 0x3B):
            del out[start:]
            return -1
        return ret

    def content_param(self) -> tuple[int, bytes, bytes]:
        if self.pos >= self.end:
            return 0, b"", b""
        if self.data[self.pos] != 0x3B:
            return -1, b"", b""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1, b"", b""
        key = bytearray()
        if self.mime_token(key) <= 0:
            return -1, b"", b""
        if self.data[self.pos] != 0x3D:
            return -1, b"", b""
        self.pos += 1
        value = bytearray()
        ret = self.skip_lwsp()
        if ret <= 0:
            pass  # broken or missing value
        elif self.data[self.pos] == 0x22:
            ret = self.quoted_string(value)
        elif self.data[self.pos] == 0x3D:
            # name==?utf-8?b?...?= written without quotes
            while self.pos < self.end and self.data[self.pos] not in b"; \t\r\n":
                value.append(self.data[self.pos])
                self.pos += 1
        else:
            ret = self.mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key), bytes(value)


def _cut_nul(value: bytes) -> bytes:
    # Dovecot copies these with C string functions, which stop at a NUL.
    nul = value.find(b"\0")
    return value if nul < 0 else value[:nul]


_REPLACEMENT: Final = "\ufffd".encode()


def _nul(value: bytes) -> bytes:
    """NUL inside quoted strings, comments and domain literals becomes U+FFFD."""
    return value.replace(b"\0", _REPLACEMENT) if b"\0" in value else value


def _rfc2231_escape(value: bytes) -> bytes:
    return value.replace(b"%", b"%25")


def parse_content_params(reader: Rfc822Reader) -> list[tuple[bytes, bytes]]:
    """Read ``*(; name=value)`` and merge RFC 2231 ``name*0*=`` pieces (not decoded).

    Plain parameters keep their order; merged RFC 2231 ones follow, sorted by name
    (byte order), each as ``name*`` when any piece was extended (charset'lang'
    percent-encoding) or ``name`` otherwise. When a piece is missing, the pieces are
    kept apart as ``name*N`` / ``name*N*``, as Dovecot does.
    """
    plain: list[tuple[bytes, bytes]] = []
    pieces: list[tuple[bytes, int, bool, bytes]] = []
    index = 0  # Dovecot reuses the index of the previous piece for "name*"
    while True:
        ret, key, value = reader.content_param()
        if ret == 0:
            break
        if ret < 0:
            if reader.pos >= reader.end:
                break
            reader.pos += 1
            continue
        star = key.find(b"*")
        if star < 0:
            plain.append((key, value))
            continue
        rest = key[star + 1 :]
        extended = not rest  # "name*": the index of the previous piece is reused
        if rest:
            index = 0
            digits = 0
            while digits < len(rest) and 0x30 <= rest[digits] <= 0x39:
                index = (index * 10 + rest[digits] - 0x30) & 0xFFFFFFFF
                digits += 1
            rest = rest[digits:]
            extended = rest.startswith(b"*")
            if extended:
                rest = rest[1:]
        if rest:
            plain.append((key, value))
            continue
        pieces.append((key[:star], index, extended, value))
    if not pieces:
        return plain
    pieces.sort(key=lambda p: (p[0], p[1]))
    result = plain
    i = 0
    while i < len(pieces):
        name = pieces[i][0]
        j = i
        ok = True
        have_extended = False
        expected = 0
        while j < len(pieces) and pieces[j][0].lower() == name.lower():
            if pieces[j][1] != expected:
                ok = False
            have_extended = have_extended or pieces[j][2]
            expected += 1
            j += 1
        group = pieces[i:j]
        if not ok:
            for key, idx, ext, value in group:
                result.append((key + b"*%d" % idx + (b"*" if ext else b""), value))
        else:
            merged = bytearray(b"''" if not group[0][2] and have_extended else b"")
            for _key, _idx, ext, value in group:
                merged += _rfc2231_escape(value) if not ext and have_extended else value
            result.append((name + b"*" if have_extended else name, bytes(merged)))
        i = j
    return result

"""What a script may read of one message: decoded header values, addresses, body text.

Parsed lazily from the raw bytes with the standard library's `email` package: a script
that tests headers only never parses the body. Header values are unfolded and their
RFC 2047 encoded-words decoded, as RFC 5228 2.7.2 asks and Pigeonhole does.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
from collections.abc import Hashable
from dataclasses import dataclass
from email.message import EmailMessage, Message

# RFC 5228 5.1: the address test works on headers that hold addresses.
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "sender",
        "reply-to",
        "resent-from",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-sender",
        "resent-reply-to",
        "delivered-to",
        "return-path",
        "disposition-notification-to",
    }
)


@dataclass(frozen=True)
class SieveEnvelope:
    """The SMTP envelope of one recipient's copy: MAIL FROM ("" for <>) and the RCPT TO
    address as the MTA gave it (with its +detail)."""

    sender: str
    recipient: str


# The address forms most fields hold, which `_simple_addresses` reads without the email
# package's parser (a tenth of the cost): local@domain or phrase <local@domain>, of
# RFC 5322 atoms only, in a list separated by commas. Anything else (quotes, comments,
# groups, routes, domain literals, 8-bit, a missing part) goes to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_ADDRESS = re.compile(
    rf"[ \t]*(?:({_ADDR_SPEC})|(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]+[ \t]+)*"
    rf"(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]+[ \t]*)?<({_ADDR_SPEC})>)[ \t]*"
)


def _simple_addresses(value: str) -> list[str] | None:
    """The addresses of one field's value, as `email.utils.getaddresses` reads them,
    if every element is of the simple forms above; None for the parser to read."""
    found: list[str] = []
    for element in value.split(","):
        match = _SIMPLE_ADDRESS.fullmatch(element)
        if match is None:
            return None
        found.append(match.group(1) or match.group(2))
    return found


def _decode(value: str) -> str:
    if "=?" not in value:
        return value  # no encoded-word: decode_header would give it back as it is
    try:
        parts = email.header.decode_header(value)
        return str(email.header.make_header(parts))
    except (ValueError, LookupError, UnicodeError):
        return value  # a broken encoded-word: compare what was written


class SieveMessage:
    """One message as the tests see it; built once per delivery, read by every script."""

    def __init__(self, raw: bytes, size: int | None = None) -> None:
        """`raw` may be the header only (a script without body tests); `size` is then
        the whole message's."""
        self.raw = raw
        self.size = len(raw) if size is None else size
        self._headers: list[tuple[str, str]] | None = None
        self._parsed: Message | None = None
        # Scripts test the same few headers rule after rule: decode and parse each once.
        self._decoded: dict[str, list[str]] = {}
        self._addresses: dict[str, list[str]] = {}
        self.memo: dict[Hashable, list[str]] = {}
        """Values the compiled tests (`_predicates`) made from this message, by what
        they are; shared lists that nobody changes."""

    def _header_list(self) -> list[tuple[str, str]]:
        if self._headers is None:
            # RFC 5322 fields by hand: the email package's parser costs more than a
            # 20-rule script. 8-bit bytes are read as UTF-8 (RFC 6532).
            head = self.raw[: _body_start(self.raw)].decode("utf-8", errors="replace")
            fields: list[tuple[str, str]] = []
            for line in head.splitlines():
                if line[:1] in (" ", "\t") and fields:
                    name, value = fields[-1]
                    fields[-1] = (name, value + line)
                elif ":" in line:
                    name, _, value = line.partition(":")
                    fields.append((name.strip().lower(), value))
            self._headers = [(name, value.strip()) for name, value in fields]
        return self._headers

    def header(self, name: str) -> list[str]:
        """The decoded values of every field named `name` (any case), in order."""
        wanted = name.lower()
        found = self._decoded.get(wanted)
        if found is None:
            found = [_decode(value) for key, value in self._header_list() if key == wanted]
            self._decoded[wanted] = found
        return found

    def raw_header(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._header_list() if key == wanted]

    def has_header(self, name: str) -> bool:
        wanted = name.lower()
        return any(key == wanted for key, _value in self._header_list())

    def addresses(self, name: str) -> list[str]:
        """The addresses (local@domain, no display name) in the fields named `name`."""
        wanted = name.lower()
        found = self._addresses.get(wanted)
        if found is None:
            values = self.raw_header(wanted)
            simple = [_simple_addresses(value) for value in values]
            if all(s is not None for s in simple):
                found = [a for s in simple if s is not None for a in s]
            else:
                found = [addr for _display, addr in email.utils.getaddresses(values) if addr]
            self._addresses[wanted] = found
        return found

    def body(self, transform: str, content_types: tuple[str, ...]) -> list[str]:
        """RFC 5173: ":raw" the undecoded body; ":text" the decoded text/* parts;
        ":content" the decoded parts whose type matches one of `content_types` ("" for
        all, "text" for a type, "text/plain" for one subtype)."""
        if transform == ":raw":
            body = self.raw[_body_start(self.raw) :]
            return [body.decode("utf-8", errors="replace")]
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        wanted = ("text",) if transform == ":text" else content_types
        texts: list[str] = []
        for part in self._parsed.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type().lower()
            if not any(_type_matches(ctype, want) for want in wanted):
                continue
            texts.append(_part_text(part))
        return texts


def _body_start(raw: bytes) -> int:
    """Where the body starts: after the first empty line (CRLF or bare LF)."""
    # The bare-LF form is looked for only before the CRLF one: a search of its own
    # would run through all of a big message that has none.
    if raw[:1] == b"\n" or raw[:2] == b"\r\n":
        return 0  # an empty header (RFC 5322 3.5): what follows is body, never fields
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return len(raw) if crlf < 0 else crlf + 4


def _type_matches(ctype: str, wanted: str) -> bool:
    wanted = wanted.lower()
    if wanted == "":
        return True
    if "/" in wanted:
        return ctype == wanted
    return ctype.split("/", 1)[0] == wanted


def _part_text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
        except (LookupError, ValueError, KeyError, AssertionError):
            content = None
        if isinstance(content, str):
            return content
        if isinstance(content, bytes):
            return content.decode("utf-8", errors="replace")
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""

"""HEADER.FIELDS and HEADER.FIELDS.NOT: picking header fields the way Dovecot does.

Two styles, because Dovecot answers them from two code paths:

* the message's own ``HEADER.FIELDS`` comes from its header cache: every matching
  field with CRLF line ends, then one empty line, always;
* ``HEADER.FIELDS.NOT`` and the fields of a message/rfc822 part come from a filter
  over the raw header: matching lines as they are (LF made CRLF), and the empty line
  only when the header had one.

Field names match case-insensitively on the name before the colon (blanks before the
colon ignored); lines without a colon are never a match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptmail.imap.message._partmap import SectionPlan, VirtualStream, window

__all__ = ["filter_header", "header_section"]


def _fields(header: bytes) -> Iterable[tuple[bytes | None, list[bytes]]]:
    """Yield (lower-case name or None, raw lines with their line ends) per field;
    the final empty line comes as (None, [line]) with name None too."""
    lines = [piece + b"\n" for piece in header.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    current_name: bytes | None = None
    current: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            yield current_name, current
        stripped = line.rstrip(b"\r\n")
        if not stripped:
            yield None, [line]
            current, current_name = [], None
            continue
        colon = stripped.find(b":")
        current_name = stripped[:colon].rstrip(b" \t").lower() if colon >= 0 else None
        current = [line]
    if current:
        yield current_name, current


def filter_header(
    header: bytes, names: Sequence[str], *, exclude: bool, cached_style: bool
) -> bytes:
    """The raw (stored) header block in, the IMAP answer out (CRLF line ends)."""
    wanted = {name.lower().encode("ascii", "replace") for name in names}
    out = bytearray()
    for name, lines in _fields(header):
        if name is None and lines and not lines[0].rstrip(b"\r\n"):
            if not cached_style:
                out += b"\r\n"
            break  # the header ends at its first empty line
        matched = name is not None and name in wanted
        if matched == exclude:
            continue
        if cached_style:
            for line in lines:
                if line.endswith(b"\n"):
                    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                out += line + b"\r\n"
        else:
            stream = VirtualStream()
            for line in lines:
                out += stream.feed(line)
    if cached_style:
        out += b"\r\n"
    return bytes(out).replace(b"\0", b"\x80")  # IMAP literals carry no NUL


def header_section(header: bytes, plan: SectionPlan, partial: tuple[int, int] | None) -> bytes:
    """Answer a HEADER.FIELDS[.NOT] plan from the part's stored header bytes."""
    if plan.header_fields is None:
        raise ValueError("the plan is not a HEADER.FIELDS plan")
    full = filter_header(
        header, plan.header_fields, exclude=plan.exclude, cached_style=plan.cached_header_style
    )
    skip, size = window(len(full), partial)
    return full[skip : skip + size]

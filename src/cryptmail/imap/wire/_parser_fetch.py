"""FETCH items and STORE arguments (RFC 3501 section 9, RFC 7162 modifiers)."""

from __future__ import annotations

from typing import Final, Literal

from cryptmail.imap.wire._lexer import MAX_MODSEQ, Cursor
from cryptmail.imap.wire._requests import (
    BinarySection,
    BodySection,
    FetchAttribute,
    FetchItem,
    Section,
)

__all__ = ["parse_fetch_items", "parse_fetch_modifiers", "parse_section", "parse_store_action"]

_SIMPLE: Final = frozenset(
    {
        "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
        "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
        "SAVEDATE", "EMAILID", "THREADID",
    }
)  # fmt: skip
_MACROS: Final = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_NAME_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")
_SECTION_WORD: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")


def _section(cur: Cursor) -> Section:
    cur.expect_byte(b"[", "'['")
    part: list[int] = []
    text = ""
    fields: tuple[str, ...] = ()
    while cur.peek() in range(0x30, 0x3A):
        part.append(cur.number(nonzero=True))
        if not cur.skip_byte(b"."):
            break
        if cur.peek() not in range(0x30, 0x3A):
            text = cur.word(_SECTION_WORD, "a section name").upper()
            break
    else:
        if cur.peek() != ord("]"):
            text = cur.word(_SECTION_WORD, "a section name").upper()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        cur.expect_byte(b"(", "a header list")
        names: list[str] = []
        while True:
            raw = cur.astring()
            try:
                names.append(raw.decode("ascii"))
            except UnicodeDecodeError as exc:
                raise cur.fail("Invalid header field name") from exc
            if cur.skip_byte(b")"):
                break
            cur.sp()
        fields = tuple(names)
    elif text not in ("", "HEADER", "TEXT", "MIME") or (text == "MIME" and not part):
        raise cur.fail("Invalid BODY[] section")
    cur.expect_byte(b"]", "']'")
    return Section(tuple(part), text, fields)  # type: ignore[arg-type]  # checked above


def _partial(cur: Cursor) -> tuple[int, int] | None:
    if not cur.skip_byte(b"<"):
        return None
    offset = cur.number()
    cur.expect_byte(b".", "'.' in a partial range")
    length = cur.number(nonzero=True)
    cur.expect_byte(b">", "'>'")
    return offset, length


def _binary_section(cur: Cursor, name: str) -> BinarySection:
    """RFC 3516 ``section-binary``: ``[`` part numbers only ``]``; no partial on SIZE."""
    cur.expect_byte(b"[", "'['")
    part: list[int] = []
    if cur.peek() != ord("]"):
        part.append(cur.number(nonzero=True))
        while cur.skip_byte(b"."):
            part.append(cur.number(nonzero=True))
    cur.expect_byte(b"]", "']' (BINARY takes part numbers only)")
    if name == "BINARY.SIZE":
        return BinarySection(tuple(part), peek=True, size_only=True)
    return BinarySection(tuple(part), peek=name == "BINARY.PEEK", partial=_partial(cur))


def parse_section(cur: Cursor) -> Section:
    """``[section]`` as BODY[...] takes it (an IMAP URL's SECTION too)."""
    return _section(cur)


def _fetch_att(cur: Cursor) -> list[FetchItem]:
    name = cur.word(_NAME_CHARS, "a FETCH item").upper()
    if name in _MACROS:
        return [FetchAttribute(n) for n in _MACROS[name]]
    if name in ("BODY", "BODY.PEEK") and cur.peek() == ord("["):
        section = _section(cur)
        return [BodySection(section, peek=name == "BODY.PEEK", partial=_partial(cur))]
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        return [_binary_section(cur, name)]
    if name in _SIMPLE:
        return [FetchAttribute(name)]
    if name == "PREVIEW":
        return [FetchAttribute(_preview_modifiers(cur))]
    raise cur.fail("Unknown FETCH item")


def _preview_modifiers(cur: Cursor) -> str:
    """RFC 8970: ``PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"]``; LAZY is the
    only modifier. Returns the item's name: PREVIEW, or PREVIEW.LAZY for ``(LAZY)``."""
    if cur.lookahead(2) != b" (":
        return "PREVIEW"
    cur.sp()
    cur.expect_byte(b"(", "'('")
    lazy = False
    while True:
        if cur.atom("a PREVIEW modifier").upper() != "LAZY":
            raise cur.fail("Unknown PREVIEW modifier")
        lazy = True
        if cur.skip_byte(b")"):
            break
        cur.sp()
    return "PREVIEW.LAZY" if lazy else "PREVIEW"


def parse_fetch_items(cur: Cursor) -> tuple[FetchItem, ...]:
    """``ALL`` / ``FULL`` / ``FAST`` / fetch-att / ``(`` fetch-att *(SP fetch-att) ``)``."""
    items: list[FetchItem] = []
    if cur.skip_byte(b"("):
        while True:
            for item in _fetch_att(cur):
                if item not in items:
                    items.append(item)
            if cur.skip_byte(b")"):
                break
            cur.sp()
        if not items:
            raise cur.fail("Empty FETCH item list")
    else:
        items.extend(_fetch_att(cur))
    if FetchAttribute("PREVIEW") in items:  # one PREVIEW answer: the one that waits
        items = [item for item in items if item != FetchAttribute("PREVIEW.LAZY")]
    return tuple(items)


def parse_fetch_modifiers(cur: Cursor) -> tuple[int | None, bool]:
    """``(CHANGEDSINCE n [VANISHED])``; returns (changed_since, vanished)."""
    changed_since: int | None = None
    vanished = False
    cur.expect_byte(b"(", "'('")
    while True:
        word = cur.atom("a FETCH modifier").upper()
        if word == "CHANGEDSINCE" and changed_since is None:
            cur.sp()
            changed_since = cur.number(nonzero=True, limit=MAX_MODSEQ)
        elif word == "VANISHED" and not vanished:
            vanished = True
        else:
            raise cur.fail("Unknown or repeated FETCH modifier")
        if cur.skip_byte(b")"):
            break
        cur.sp()
    if vanished and changed_since is None:
        raise cur.fail("VANISHED needs CHANGEDSINCE")
    return changed_since, vanished


def parse_store_action(
    cur: Cursor,
) -> tuple[Literal["set", "add", "remove"], bool, tuple[str, ...]]:
    """``[+-]FLAGS[.SILENT] SP (flag-list / flag *(SP flag))``."""
    mode: Literal["set", "add", "remove"] = "set"
    if cur.skip_byte(b"+"):
        mode = "add"
    elif cur.skip_byte(b"-"):
        mode = "remove"
    word = cur.word(_NAME_CHARS, "FLAGS").upper()
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise cur.fail("Expected FLAGS or FLAGS.SILENT")
    cur.sp()
    if cur.peek() == ord("("):
        flags = cur.flag_list()
    else:
        found = [cur.flag()]
        while not cur.at_end():
            cur.sp()
            found.append(cur.flag())
        flags = tuple(found)
    if "\\Recent" in flags:
        raise cur.fail("\\Recent cannot be stored")
    return mode, word == "FLAGS.SILENT", flags

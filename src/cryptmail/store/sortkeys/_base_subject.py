"""The base subject of RFC 5256 section 2.1, which SORT SUBJECT and THREAD compare."""

from __future__ import annotations

import re
from typing import Final

from cryptmail.store.headers import decode_header_value

__all__ = ["base_subject", "valid_utf8"]

_BLANKS: Final = re.compile(r"[ \t]+")
_BLOB: Final = re.compile(r"\[[^\[\]]*\] *")
_REFWD: Final = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]]*\] *)?:", re.IGNORECASE)
_TRAILER: Final = re.compile(r"(?:\(fwd\)| )$", re.IGNORECASE)


def _strip_leader(text: str) -> tuple[str, bool]:
    """Step 3: every prefix matching ``subj-leader`` (``*subj-blob subj-refwd`` or WSP)."""
    reply = False
    while True:
        if text.startswith(" "):
            text = text[1:]
            continue
        pos = 0
        while (blob := _BLOB.match(text, pos)) is not None:
            pos = blob.end()
        refwd = _REFWD.match(text, pos)
        if refwd is None:
            return text, reply
        text = text[refwd.end() :]
        reply = True


def valid_utf8(raw: bytes) -> bytes:
    """Bytes that are not UTF-8 become U+FFFD (as in Dovecot, which sorts them last)."""
    return raw.decode("utf-8", "replace").encode("utf-8")


def base_subject(raw: bytes) -> tuple[str, bool]:
    """The base subject of a raw Subject: value (not casemapped) and whether the subject
    marked a reply or forward."""
    # Step 1: encoded words decoded, blanks and continuations one space.
    text = _BLANKS.sub(" ", decode_header_value(valid_utf8(raw)))
    reply = False
    while True:
        # Step 2: trailers ("(fwd)" or a blank), repeatedly.
        while (trailer := _TRAILER.search(text)) is not None:
            if trailer.group(0) != " ":
                reply = True
            text = text[: trailer.start()]
        # Steps 3 to 5: leaders and leading blobs until none is left.
        while True:
            before = text
            text, was_reply = _strip_leader(text)
            reply |= was_reply
            blob = _BLOB.match(text)
            if blob is not None and blob.end() < len(text):
                text = text[blob.end() :]
            if text == before:
                break
        # Step 6: "[fwd: ...]" unwrapped, then from step 2 again.
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply

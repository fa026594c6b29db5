"""Recovery codes and app passwords: random, shown once, easy to copy by hand.

A code is groups of characters joined by hyphens, drawn from base32 without the letters
that look like digits or each other (I, L, O, B): recovery codes are 8 groups of 5
(192 bits), app passwords 4 groups of 5 (96 bits). A typed code is normalized (case,
spaces, hyphens), so a hand-copied code still works, and since the look-alikes are never
generated, a misread character cannot silently match another code's.
`code_lookup_id` finds the slot for a code without trying every slot's Argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptmail.crypto._labels import (
    APP_PASSWORD_GROUPS,
    CODE_GROUP_SIZE,
    LABEL_CODE_LOOKUP,
    RECOVERY_CODE_GROUPS,
)

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# What we generate from: no I/L (1), O (0), B (8), so nothing reads two ways.
_UNAMBIGUOUS = "".join(ch for ch in _B32 if ch not in "ILOB")
_FIX = str.maketrans({"0": "O", "1": "I", "8": "B"})


def _generate(groups: int) -> str:
    chars = "".join(secrets.choice(_UNAMBIGUOUS) for _ in range(groups * CODE_GROUP_SIZE))
    return "-".join(chars[i : i + CODE_GROUP_SIZE] for i in range(0, len(chars), CODE_GROUP_SIZE))


def generate_recovery_code() -> str:
    return _generate(RECOVERY_CODE_GROUPS)


def generate_app_password() -> str:
    return _generate(APP_PASSWORD_GROUPS).lower()


def normalize_code(text: str) -> str | None:
    """The canonical form of a typed code, or None if it cannot be one."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t").translate(_FIX)
    if not cleaned or any(ch not in _B32 for ch in cleaned):
        return None
    if len(cleaned) % CODE_GROUP_SIZE:
        return None
    return cleaned


def code_lookup_id(normalized: str) -> bytes:
    """16-byte id of a normalized code. Codes carry 100+ bits, so this reveals nothing."""
    return hmac.new(LABEL_CODE_LOOKUP, normalized.encode(), hashlib.sha256).digest()[:16]

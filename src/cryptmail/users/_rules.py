"""Rules for new passwords: long enough, not too long, not the address, not one character.

Any UTF-8 text is welcome otherwise: spaces, quotes, `%`, non-ASCII. Existing passwords
are never checked against these rules; only a password being set is.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from cryptmail.errors import PasswordRejected
from cryptmail.secret import Password

DEFAULT_MIN_LENGTH: Final = 10
"""Shortest new password, in characters (Unicode code points after NFC)."""
MAX_PASSWORD_BYTES: Final = 1024
"""Longest new password, in UTF-8 bytes."""

_MIN_LOCAL_PART: Final = 3
"""Local parts shorter than this are not searched for: `a@example.org` must not ban 'a'."""


def check_new_password(
    password: Password, address: str, *, min_length: int = DEFAULT_MIN_LENGTH
) -> None:
    """Refuse a new password for the mailbox `address` that breaks a rule.

    All broken rules are named in one message, so a person can fix them at once. The
    message never contains the password, nor its length.

    Raises:
        PasswordRejected: the password is not UTF-8 text, contains control characters, is
            shorter than `min_length` characters or longer than 1024 bytes, is one
            character repeated, or contains the address or its local part (ignoring case).
        ValueError: `min_length` is below 1.
    """
    if min_length < 1:
        raise ValueError("min_length must be at least 1")
    secret = password.reveal()
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordRejected(
            "The new password is not valid UTF-8 text; type it again as text."
        ) from None

    problems: list[str] = []
    if any(unicodedata.category(char) == "Cc" for char in text):
        problems.append("it contains control characters (line breaks, tabs or NUL)")
    if len(unicodedata.normalize("NFC", text)) < min_length:
        problems.append(f"it is shorter than {min_length} characters")
    if len(secret) > MAX_PASSWORD_BYTES:
        problems.append(f"it is longer than {MAX_PASSWORD_BYTES} bytes")
    folded = text.casefold()
    if len(set(folded)) == 1:
        problems.append("it is one character repeated")
    mailbox = address.strip().casefold()
    local_part = mailbox.rpartition("@")[0] if "@" in mailbox else mailbox
    if mailbox and mailbox in folded:
        problems.append("it contains the mail address")
    elif len(local_part) >= _MIN_LOCAL_PART and local_part in folded:
        problems.append("it contains the part of the mail address before the @")
    if problems:
        raise PasswordRejected(
            f"The new password was not accepted: {'; '.join(problems)}. Choose another one."
        )

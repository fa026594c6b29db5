"""Rules for new passwords: long enough, not too long, not the address, not one character,
not one of the most common passwords.

This is the one password policy: the CLI (`user add`, `user passwd`, `user recover`),
the web pages and the JSON API all call it.

Any UTF-8 text is welcome otherwise: spaces, quotes, `%`, non-ASCII. Existing passwords
are never checked against these rules; only a password being set is.
"""

from __future__ import annotations

import enum
import unicodedata
from typing import Final

from cryptmail.errors import PasswordRejected
from cryptmail.secret import Password
from cryptmail.users._common import is_common_password

DEFAULT_MIN_LENGTH: Final = 10
"""Shortest new password, in characters (Unicode code points after NFC)."""
MAX_PASSWORD_BYTES: Final = 1024
"""Longest new password, in UTF-8 bytes."""

_MIN_LOCAL_PART: Final = 3
"""Local parts shorter than this are not searched for: `a@example.org` must not ban 'a'."""


class PasswordRule(enum.Enum):
    """A rule a new password broke; the value is the sentence that names it."""

    NOT_TEXT = "it is not valid UTF-8 text"
    CONTROL = "it contains control characters (line breaks, tabs or NUL)"
    SHORT = "it is shorter than {min_length} characters"
    LONG = f"it is longer than {MAX_PASSWORD_BYTES} bytes"
    REPEATED = "it is one character repeated"
    ADDRESS = "it contains the mail address"
    LOCAL_PART = "it contains the part of the mail address before the @"
    COMMON = "it is one of the 10,000 most common passwords"


def password_problems(
    password: Password, address: str, *, min_length: int = DEFAULT_MIN_LENGTH
) -> list[PasswordRule]:
    """Every rule the new password for the mailbox `address` breaks, in a fixed order.

    Raises:
        ValueError: `min_length` is below 1.
    """
    if min_length < 1:
        raise ValueError("min_length must be at least 1")
    secret = password.reveal()
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return [PasswordRule.NOT_TEXT]
    problems: list[PasswordRule] = []
    if any(unicodedata.category(char) == "Cc" for char in text):
        problems.append(PasswordRule.CONTROL)
    if len(unicodedata.normalize("NFC", text)) < min_length:
        problems.append(PasswordRule.SHORT)
    if len(secret) > MAX_PASSWORD_BYTES:
        problems.append(PasswordRule.LONG)
    folded = text.casefold()
    if len(set(folded)) == 1:
        problems.append(PasswordRule.REPEATED)
    mailbox = address.strip().casefold()
    local_part = mailbox.rpartition("@")[0] if "@" in mailbox else mailbox
    if mailbox and mailbox in folded:
        problems.append(PasswordRule.ADDRESS)
    elif len(local_part) >= _MIN_LOCAL_PART and local_part in folded:
        problems.append(PasswordRule.LOCAL_PART)
    if is_common_password(text):
        problems.append(PasswordRule.COMMON)
    return problems


def check_new_password(
    password: Password, address: str, *, min_length: int = DEFAULT_MIN_LENGTH
) -> None:
    """Refuse a new password for the mailbox `address` that breaks a rule.

    All broken rules are named in one message, so a person can fix them at once. The
    message never contains the password, nor its length.

    Raises:
        PasswordRejected: the password is not UTF-8 text, contains control characters, is
            shorter than `min_length` characters or longer than 1024 bytes, is one
            character repeated, contains the address or its local part (ignoring case),
            or is one of the 10,000 most common passwords.
        ValueError: `min_length` is below 1.
    """
    problems = password_problems(password, address, min_length=min_length)
    if problems == [PasswordRule.NOT_TEXT]:
        raise PasswordRejected("The new password is not valid UTF-8 text; type it again as text.")
    if problems:
        named = "; ".join(rule.value.format(min_length=min_length) for rule in problems)
        raise PasswordRejected(f"The new password was not accepted: {named}. Choose another one.")

"""The most common passwords, shipped with the package: no network is needed.

`common_passwords.txt` holds the head (10,000 entries) of the password frequency list
that zxcvbn 4.5.0 ships (MIT licence), taken from leaked password sets. It is read once,
on first use, and compared ignoring case.
"""

from __future__ import annotations

import functools
from importlib import resources

_LIST_FILE = "common_passwords.txt"


@functools.cache
def _common() -> frozenset[str]:
    text = resources.files(__package__).joinpath(_LIST_FILE).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("# "))


def is_common_password(text: str) -> bool:
    """Whether `text` is one of the 10,000 most common passwords (ignoring case)."""
    return text.casefold() in _common()

"""The log's address tag is keyed (HMAC under a per-process random key): it cannot be
reversed by hashing guessed addresses, and it is stable only within one process."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from cryptmail.web._attempts import address_tag

_PRINT_TAG = (
    "from cryptmail.web._attempts import address_tag; print(address_tag('alice@example.org'))"
)


def test_the_tag_is_not_a_plain_hash_of_the_address() -> None:
    plain = hashlib.sha256(b"alice@example.org").hexdigest()
    assert address_tag("alice@example.org") not in plain


def test_the_tag_is_stable_within_a_process_and_differs_across_processes() -> None:
    assert address_tag("alice@example.org") == address_tag("ALICE@example.org ")
    tags = {
        subprocess.run(
            [sys.executable, "-c", _PRINT_TAG], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(tags) == 2 and all(len(tag) == 12 for tag in tags)

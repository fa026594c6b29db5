"""Recovery codes and app passwords: format, normalization and lookup ids."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.crypto import (
    code_lookup_id,
    generate_app_password,
    generate_recovery_code,
    normalize_code,
)

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_recovery_code_format() -> None:
    codes = {generate_recovery_code() for _ in range(20)}
    assert len(codes) == 20
    for code in codes:
        assert re.fullmatch(r"([A-Z2-7]{5}-){7}[A-Z2-7]{5}", code)


def test_app_password_format() -> None:
    codes = {generate_app_password() for _ in range(20)}
    assert len(codes) == 20
    for code in codes:
        assert re.fullmatch(r"([a-z2-7]{5}-){3}[a-z2-7]{5}", code)


def test_generated_codes_normalize_to_their_characters() -> None:
    code = generate_recovery_code()
    assert normalize_code(code) == code.replace("-", "")
    app = generate_app_password()
    assert normalize_code(app) == app.replace("-", "").upper()


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("abcde-fghij", "ABCDEFGHIJ"),
        ("  ABCDE FGHIJ\t", "ABCDEFGHIJ"),
        ("ABCDE--FGHIJ", "ABCDEFGHIJ"),
        ("0BCDE", "OBCDE"),  # zero for O
        ("1BCDE", "IBCDE"),  # one for I
        ("8BCDE", "BBCDE"),  # eight for B
        ("lbcde", "LBCDE"),  # L is a base32 letter of its own
    ],
)
def test_normalization(typed: str, normalized: str) -> None:
    assert normalize_code(typed) == normalized


@pytest.mark.parametrize("typed", ["", "-", "   ", "ABCD", "ABCDEF", "ABCD9", "ABCD!", "ÄBCDE"])
def test_not_a_code(typed: str) -> None:
    assert normalize_code(typed) is None


@given(st.text(max_size=60))
def test_normalization_is_idempotent(text: str) -> None:
    normalized = normalize_code(text)
    if normalized is not None:
        assert normalize_code(normalized) == normalized
        assert set(normalized) <= set(B32) and len(normalized) % 5 == 0


def test_lookup_id_is_the_documented_hash() -> None:
    normalized = "ABCDEFGHIJKLMNOPQRST"
    expected = hmac.new(b"cryptmail/v1/code-lookup", normalized.encode(), hashlib.sha256).digest()
    assert code_lookup_id(normalized) == expected[:16]
    assert code_lookup_id(normalized).hex() == "4cd1d603fe6cdb07640b5d3147dd872b"
    assert code_lookup_id("ABCDEFGHIJKLMNOPQRSS") != code_lookup_id(normalized)


def test_a_hand_copied_code_finds_the_same_slot() -> None:
    code = generate_app_password()
    messy = " " + code.upper().replace("-", " ") + " "
    assert code_lookup_id(normalize_code(messy) or "") == code_lookup_id(normalize_code(code) or "")

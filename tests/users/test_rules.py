"""Rules for new passwords."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.errors import PasswordRejected
from cryptmail.secret import Password
from cryptmail.users import check_new_password

ADDRESS = "john.doe@example.org"


def check(text: str, address: str = ADDRESS, **kwargs: int) -> None:
    check_new_password(Password.from_str(text), address, **kwargs)


def rejected(text: str, address: str = ADDRESS, **kwargs: int) -> str:
    with pytest.raises(PasswordRejected) as info:
        check(text, address, **kwargs)
    message = str(info.value)
    if len(text) >= 6:  # shorter ones may occur in the wording by chance
        assert text not in message, "the message must not echo the password"
    return message


@pytest.mark.parametrize(
    "text",
    [
        "correct horse battery staple",
        "100% sûr, \"quoted\" and 'single'",
        "  spaces at both ends  ",
        "日本語のパスワードです",
        "Grüße aus Köln!",
        "%u%d%n%h%%%%",
        "emoji 🔑🔑🔑 key",
        "xy" * 512,
        "ab" * 5,
    ],
)
def test_good_passwords_pass(text: str) -> None:
    check(text)


def test_min_length_counts_characters_not_bytes() -> None:
    check("äöüßéèçñøå")  # 10 characters, 20 bytes
    check("e\u0301" * 5 + "abcde")  # NFC: 10 characters (5 composed é)
    assert "shorter than 10 characters" in rejected("e\u0301" * 4 + "abcde")
    assert "shorter than 10 characters" in rejected("qz5!")


def test_min_length_is_a_parameter() -> None:
    check("tiny!", min_length=5)
    assert "shorter than 16 characters" in rejected("fifteen chars!!", min_length=16)
    with pytest.raises(ValueError, match="min_length"):
        check("whatever long", min_length=0)


def test_max_length_is_1024_bytes() -> None:
    assert "longer than 1024 bytes" in rejected("x" * 1024 + "y")
    assert "longer than 1024 bytes" in rejected("ä" * 513)  # 1026 bytes


@pytest.mark.parametrize("text", ["aaaaaaaaaaaa", "            ", "AaAaAaAaAaAa", "ßßßßßßßßßßßß"])
def test_one_character_repeated_is_rejected(text: str) -> None:
    assert "one character repeated" in rejected(text)


@pytest.mark.parametrize(
    "text",
    ["john.doe@example.org!", "my JOHN.DOE@EXAMPLE.ORG pw", "xx John.Doe@Example.Org xx"],
)
def test_the_address_is_rejected_case_insensitively(text: str) -> None:
    assert "contains the mail address" in rejected(text)


@pytest.mark.parametrize("text", ["john.doe-2024!", "I am JOHN.DOE here", "secret john.DOE"])
def test_the_local_part_is_rejected_case_insensitively(text: str) -> None:
    assert "before the @" in rejected(text)


def test_short_local_parts_do_not_ban_letters() -> None:
    check("a perfectly fine password", address="a@example.org")
    check("jo is my name, see", address="jo@example.org")
    assert "before the @" in rejected("bob the builder", address="bob@example.org")


def test_the_address_is_matched_after_trimming() -> None:
    assert "contains the mail address" in rejected(
        "x john.doe@example.org x", "  John.Doe@Example.ORG "
    )


@pytest.mark.parametrize(
    "text", ["line\nbreak here", "tab\there!!!", "nul\x00inside!!", "del\x7fdel!!!"]
)
def test_control_characters_are_rejected(text: str) -> None:
    assert "control characters" in rejected(text)


def test_non_utf8_bytes_are_rejected() -> None:
    with pytest.raises(PasswordRejected, match="UTF-8"):
        check_new_password(Password(b"\xff\xfe not utf-8 text"), ADDRESS)


def test_all_problems_are_named_at_once() -> None:
    message = rejected("John.Doe")
    assert "shorter than 10 characters" in message
    assert "before the @" in message
    assert message.startswith("The new password was not accepted")


@given(st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=10, max_size=60))
def test_messages_never_echo_the_password(text: str) -> None:
    try:
        check_new_password(Password.from_str("xyz" + text), "someone@example.org")
    except PasswordRejected as exc:
        assert ("xyz" + text) not in str(exc)

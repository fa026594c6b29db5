"""The common-password rule and the rule codes the web pages show one by one."""

from __future__ import annotations

import pytest

from cryptmail.errors import PasswordRejected
from cryptmail.secret import Password
from cryptmail.users import PasswordRule, check_new_password, is_common_password, password_problems

ADDRESS = "john.doe@example.org"


@pytest.mark.parametrize("text", ["1234567890", "password123", "QwertyUIOP", "qwerty123456"])
def test_common_passwords_are_rejected(text: str) -> None:
    assert is_common_password(text)
    with pytest.raises(PasswordRejected, match="one of the 10,000 most common passwords"):
        check_new_password(Password.from_str(text), ADDRESS)


def test_the_list_ships_ten_thousand_entries() -> None:
    assert is_common_password("123456") and is_common_password("password")
    assert not is_common_password("correct horse battery staple")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("short", PasswordRule.SHORT),
        ("xx john.doe@example.org", PasswordRule.ADDRESS),
        ("john.doe likes tea", PasswordRule.LOCAL_PART),
        ("aaaaaaaaaaaa", PasswordRule.REPEATED),
        ("1234567890", PasswordRule.COMMON),
        ("line\nbreak here", PasswordRule.CONTROL),
    ],
)
def test_problems_name_the_broken_rule(text: str, rule: PasswordRule) -> None:
    assert rule in password_problems(Password.from_str(text), ADDRESS, min_length=10)


def test_local_part_message_does_not_claim_the_whole_address() -> None:
    with pytest.raises(PasswordRejected) as info:
        check_new_password(Password.from_str("john.doe likes tea"), ADDRESS)
    assert "before the @" in str(info.value)
    assert "contains the mail address" not in str(info.value)

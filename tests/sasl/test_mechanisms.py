"""PLAIN and LOGIN as state machines."""

from __future__ import annotations

import pytest

from cryptmail.plainauth import Credentials
from cryptmail.sasl._mechanisms import (
    Challenge,
    Login,
    MechanismError,
    Plain,
    new_mechanism,
)


def test_plain_with_an_initial_response() -> None:
    step = Plain().step(b"\x00bob@example.org\x00secret words")
    assert isinstance(step, Credentials)
    assert step.address == "bob@example.org"
    assert step.password.reveal() == b"secret words"


def test_plain_without_one_asks_with_an_empty_challenge() -> None:
    mechanism = Plain()
    assert mechanism.step(None) == Challenge(b"")
    assert isinstance(mechanism.step(b"bob@example.org\x00bob@example.org\x00pw"), Credentials)


@pytest.mark.parametrize(
    "response",
    [
        b"only one field",
        b"\x00bob@example.org",
        b"\x00\x00password",  # no user
        b"\x00bob@example.org\x00",  # no password
        b"alice@example.org\x00bob@example.org\x00pw",  # acting as another user
        b"\x00\xff\xfe\x00pw",  # not UTF-8
        b"\x00" + b"a" * 2000 + b"\x00pw",
    ],
)
def test_plain_refuses_what_it_cannot_use(response: bytes) -> None:
    with pytest.raises(MechanismError):
        Plain().step(response)


def test_login_asks_for_the_user_then_the_password() -> None:
    mechanism = Login()
    assert mechanism.step(None) == Challenge(b"Username:")
    assert mechanism.step(b"bob@example.org") == Challenge(b"Password:")
    step = mechanism.step(b"pw")
    assert isinstance(step, Credentials) and step.address == "bob@example.org"


def test_login_takes_the_user_as_initial_response() -> None:
    mechanism = Login()
    assert mechanism.step(b"bob@example.org") == Challenge(b"Password:")


def test_credentials_do_not_show_the_password() -> None:
    step = Plain().step(b"\x00bob@example.org\x00hunter2-secret")
    assert "hunter2" not in repr(step)


def test_mechanism_names_are_case_insensitive_and_others_unknown() -> None:
    assert isinstance(new_mechanism("plain"), Plain)
    assert isinstance(new_mechanism("LOGIN"), Login)
    assert new_mechanism("CRAM-MD5") is None

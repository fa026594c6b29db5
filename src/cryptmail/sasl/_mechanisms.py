"""The SASL mechanisms offered: PLAIN (RFC 4616) and LOGIN (the old draft Outlook sends).

Each is a small state machine fed the client's responses (already base64-decoded); a
step answers with a challenge to send, or with the credentials to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptmail.plainauth import MAX_FIELD, Credentials, PlainRejected, parse_plain
from cryptmail.secret import Password

MECHANISMS: Final = (("PLAIN", "plaintext"), ("LOGIN", "plaintext"))
"""(name, flags) as the handshake announces them: both send the password in the clear,
so a client that asks for `noplaintext` (Postfix before TLS) does not offer them."""


class MechanismError(ValueError):
    """A response the mechanism cannot use; the message is safe to log (no secret)."""


@dataclass(frozen=True)
class Challenge:
    data: bytes


def _text(raw: bytes, what: str) -> str:
    if not raw or len(raw) > MAX_FIELD:
        raise MechanismError(f"the {what} is empty or too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MechanismError(f"the {what} is not UTF-8") from None


class Plain:
    """authzid NUL authcid NUL password, read by `cryptmail.plainauth`."""

    def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            return Challenge(b"")
        try:
            plain = parse_plain(response)
        except PlainRejected as exc:
            raise MechanismError(str(exc)) from None
        if not plain.password:
            raise MechanismError("the password is empty")
        return plain


class Login:
    """Username, then password, each after its prompt."""

    def __init__(self) -> None:
        self._address: str | None = None

    def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            return Challenge(b"Username:")
        if self._address is None:
            self._address = _text(response, "user name")
            return Challenge(b"Password:")
        if len(response) > MAX_FIELD:
            raise MechanismError("the password is too long")
        return Credentials(self._address, Password(response))


def new_mechanism(name: str) -> Plain | Login | None:
    upper = name.upper()
    if upper == "PLAIN":
        return Plain()
    if upper == "LOGIN":
        return Login()
    return None

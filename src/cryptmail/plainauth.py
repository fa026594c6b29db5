"""The SASL PLAIN response (RFC 4616: authzid NUL authcid NUL password), read the same
way by every protocol that offers it (IMAP, POP3, ManageSieve, Postfix's auth service);
each answers a rejection in its own words.

An authorization identity other than the user's own is refused: logging in as someone
else is not offered.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final, Literal

from cryptmail.secret import Password

MAX_FIELD: Final = 1024
"""Longest user name or password in a response; an address is at most 320 octets."""
MAX_ADDRESS: Final = 320
"""Longest address a POP3 or ManageSieve login may name (64 local + @ + 255 domain)."""

Fault = Literal["malformed", "another user", "not UTF-8", "too long"]


class PlainRejected(ValueError):
    """A PLAIN response that is not a login to try; `fault` says why, and the message
    is safe to log (it holds no part of the response)."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(f"SASL PLAIN response refused: {fault}")
        self.fault: Fault = fault


@dataclass(frozen=True, repr=False)
class Credentials:
    """A user name and password to check: from a PLAIN response, or from a protocol's
    own login (POP3 USER/PASS, SASL LOGIN). No repr: it would show the password."""

    address: str
    password: Password


def parse_plain(response: bytes) -> Credentials:
    """The user name and password of a decoded PLAIN response. Raises PlainRejected:
    not three fields or no user name ("malformed"), a field over MAX_FIELD ("too
    long"), a user name or password that is not UTF-8, or an authorization identity
    that is not the user's own ("another user")."""
    parts = response.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        raise PlainRejected("malformed")
    authzid, authcid, secret = parts
    if len(authcid) > MAX_FIELD or len(secret) > MAX_FIELD:
        raise PlainRejected("too long")
    try:
        address = authcid.decode("utf-8")
        secret.decode("utf-8")
    except UnicodeDecodeError:
        raise PlainRejected("not UTF-8") from None
    if authzid and authzid != authcid:
        raise PlainRejected("another user")
    return Credentials(address, Password(secret))


class LoginRefused(Exception):
    """A POP3 or ManageSieve login failed; `reply` is the line to send, in the
    protocol's words (POP3's -ERR, ManageSieve's NO). Why is in the operator log only."""

    def __init__(self, reply: bytes) -> None:
        super().__init__("login refused")
        self.reply = reply


def decode_plain_response(response: str | bytes, *, invalid: bytes, failed: bytes) -> Credentials:
    """The SASL PLAIN response, base64 as the client sent it. LoginRefused with
    `invalid` when it is not base64, with `failed` (the answer a wrong password gets)
    for anything else malformed, so nothing is learnt from it."""
    try:
        data = base64.b64decode(response, validate=True)  # str: ValueError if not ASCII
    except (binascii.Error, ValueError):
        raise LoginRefused(invalid) from None
    try:
        return parse_plain(data)
    except PlainRejected:
        raise LoginRefused(failed) from None

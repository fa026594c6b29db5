"""Every error of the tree has a deliberate answer in each protocol's one table.

For each class in cryptmail.errors, each table (IMAP `_error_reply`, LMTP `REPLIES`, the
web's EXCEPTION_HANDLERS, the CLI's `main`) either names it (or a base it shares the
answer with) or the class is in that protocol's allowlist below, with the reason its
generic answer (IMAP [SERVERBUG], LMTP's plain 4xx, web 500) is the right one. A new
error class fails here until someone decides.
"""

from __future__ import annotations

import argparse
import inspect

import pytest
from starlette.requests import Request

import cryptmail.errors
from cryptmail.cli import _main
from cryptmail.delivery._handler import REPLIES
from cryptmail.errors import CryptmailError
from cryptmail.imap.server._session import _error_reply
from cryptmail.web._failures import EXCEPTION_HANDLERS

E = cryptmail.errors

CLASSES = sorted(
    (
        klass
        for _name, klass in inspect.getmembers(E, inspect.isclass)
        if issubclass(klass, CryptmailError) and klass.__module__ == E.__name__
    ),
    key=lambda klass: klass.__name__,
)


def _allow(reason: str, *classes: type[CryptmailError]) -> dict[type[CryptmailError], str]:
    return dict.fromkeys(classes, reason)


NEVER_RAISED = _allow("the root is never raised itself", CryptmailError)
USERS_AND_SLOTS = (
    E.UserError,
    E.UnknownUser,
    E.UnknownDomain,
    E.UserExists,
    E.DomainExists,
    E.AliasExists,
    E.UnsupportedPasswordScheme,
    E.MalformedPasswordHash,
    E.PasswordRejected,
    E.KeySlotError,
    E.AuthenticationFailed,
    E.KeyRowsTampered,
    E.NoKeyPair,
    E.AppPasswordNotFound,
    E.AppPasswordExists,
    E.PasswordResetRefused,
)
CRYPTO = (E.CryptoError, E.DecryptionFailed, E.MalformedObject, E.KdfParametersRefused)
DOVECOT = (E.DovecotFormatError, E.DovecotKeyNotFound, E.DovecotWrongPassword)
PROTOCOL = (E.ProtocolError, E.ParseError, E.UnknownCharset, E.InputTooLarge)
SIEVE = (E.SieveError, E.SieveSyntaxError, E.SieveLimitExceeded, E.SieveRuntimeError)
SIEVE_SCRIPTS = (
    E.ScriptError,
    E.ScriptNotFound,
    E.ScriptExists,
    E.ScriptActive,
    E.ScriptNameInvalid,
    E.ScriptQuotaExceeded,
)

IMAP_GENERIC = ("NO", "[SERVERBUG]", "Internal error; the operator was told.")
IMAP_ALLOWED = {
    **NEVER_RAISED,
    **_allow("the configuration is read before the server listens", E.ConfigError),
    **_allow(
        "the store reports a stored object that does not open as ObjectTampered; a bare "
        "crypto error escaping it is a server bug",
        *CRYPTO,
    ),
    **_allow("Dovecot files are read by the CLI only", *DOVECOT),
    **_allow("Sieve scripts are compiled by ManageSieve and run at delivery only", *SIEVE),
    **_allow(
        "LOGIN and AUTHENTICATE answer AuthenticationFailed themselves; the others are "
        "admin operations no IMAP command makes, so one escaping is a server bug",
        *USERS_AND_SLOTS,
    ),
    **_allow(
        "a statement the database refused, or a conflict no caller expected (the expected "
        "ones become MailboxExists and the like where they arise), is a server bug",
        E.DatabaseError,
        E.DatabaseConflict,
    ),
    **_allow(
        "the command reader answers these (BAD, NO [TOOBIG], BYE) before a command runs; "
        "InputTooLarge reaching the table is a server bug",
        E.ProtocolError,
        E.InputTooLarge,
    ),
}

LMTP_ALLOWED = {
    **NEVER_RAISED,
    **_allow(
        "delivery meets these only through a bug or a broken store: the plain 4xx makes "
        "the sender retry and tells it nothing (delivery._handler's rule)",
        E.ConfigError,
        *CRYPTO,
        *DOVECOT,
        *USERS_AND_SLOTS,
        *PROTOCOL,
        E.StoreError,
        E.MailboxNotFound,
        E.MailboxExists,
        E.MessageNotFound,
        E.BlobMissing,
        E.ObjectTampered,
        E.PlainBlobRefused,
    ),
    **_allow(
        "ManageSieve answers these itself; delivery only reads the active script, and a "
        "refused script request reaching it is a bug: the plain 4xx",
        *SIEVE_SCRIPTS[:-1],
    ),
    **_allow(
        "delivery checks no password: neither the throttle nor the Argon2 queue is met",
        E.TooManyAttempts,
        E.KdfBusy,
        E.KdfUnavailable,
    ),
    **_allow(
        "a script that does not compile or fails while running is an implicit keep into "
        "INBOX (delivery._sieve catches it); one reaching the table is a bug: plain 4xx",
        *SIEVE,
    ),
}

WEB_GENERIC = 500
WEB_ALLOWED = {
    **NEVER_RAISED,
    **_allow(
        "the routes catch what their input can cause (AuthenticationFailed, "
        "PasswordRejected, AppPasswordExists, UnknownUser ...) and answer it themselves; "
        "one reaching the app-wide table is a server bug: 500, the log says which",
        E.ConfigError,
        *CRYPTO,
        *DOVECOT,
        *USERS_AND_SLOTS,
        *PROTOCOL,
        E.StoreError,
        E.MailboxNotFound,
        E.MailboxExists,
        E.MessageNotFound,
        E.BlobMissing,
        E.ObjectTampered,
        E.PlainBlobRefused,
        E.QuotaExceeded,
        E.KeyLocked,
        *SIEVE_SCRIPTS,
        *SIEVE,
    ),
}


def _instance(klass: type[CryptmailError]) -> CryptmailError:
    if issubclass(klass, E.ParseError):
        return klass("a fixed reason", tag="a1")
    if issubclass(klass, E.InputTooLarge):
        return klass("too large", tag="a1", limit=10, recoverable=True)
    if klass in (E.DecryptionFailed, E.AuthenticationFailed, E.KdfUnavailable):
        return klass()
    if klass is E.TooManyAttempts or klass is E.KdfBusy:
        return klass(3.0)
    if issubclass(klass, E.SieveSyntaxError | E.SieveRuntimeError):
        return klass("script", 3, "a fixed reason")
    return klass(f"a {klass.__name__} happened")


def _ids(klass: type[CryptmailError]) -> str:
    return klass.__name__


def test_the_tree_is_found() -> None:
    assert E.DatabaseUnavailable in CLASSES and E.UnknownCharset in CLASSES
    for allowed in (IMAP_ALLOWED, LMTP_ALLOWED, WEB_ALLOWED):
        assert set(allowed) <= set(CLASSES)


def _check(klass: type[CryptmailError], generic: bool, allowed: dict[type, str]) -> None:
    if klass in allowed:
        assert generic, f"{klass.__name__} has its own answer now: take it off the allowlist"
    else:
        assert not generic, f"{klass.__name__} gets the generic answer: map it or allowlist it"


@pytest.mark.parametrize("klass", CLASSES, ids=_ids)
def test_imap(klass: type[CryptmailError]) -> None:
    _check(klass, _error_reply(_instance(klass)) == IMAP_GENERIC, IMAP_ALLOWED)


@pytest.mark.parametrize("klass", CLASSES, ids=_ids)
def test_lmtp(klass: type[CryptmailError]) -> None:
    named = any(base in REPLIES for base in klass.__mro__)
    _check(klass, not named, LMTP_ALLOWED)


def _request() -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/x",
        "headers": [],
        "query_string": b"",
    }
    return Request(scope)


@pytest.mark.parametrize("klass", CLASSES, ids=_ids)
async def test_web(klass: type[CryptmailError]) -> None:
    # Starlette picks the handler of the nearest base class, as here.
    handler = next(EXCEPTION_HANDLERS[base] for base in klass.__mro__ if base in EXCEPTION_HANDLERS)
    response = await handler(_request(), _instance(klass))
    _check(klass, response.status_code == WEB_GENERIC, WEB_ALLOWED)


@pytest.mark.parametrize("klass", CLASSES, ids=_ids)
def test_cli(
    klass: type[CryptmailError], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every error is one line on stderr and exit 1, never a traceback; no allowlist.
    error = _instance(klass)

    def handler(_args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler, verbose=False)
    monkeypatch.setattr(_main, "build_parser", lambda _argv=None: parser)
    assert _main.main([]) == 1
    assert capsys.readouterr().err == f"cryptmail: {error}\n"


def test_transient_database_errors_say_try_again_everywhere() -> None:
    error = E.DatabaseUnavailable("the database did not answer")
    assert _error_reply(error)[1] == "[UNAVAILABLE]"
    assert REPLIES[E.StoreUnavailable].startswith("451 4.")

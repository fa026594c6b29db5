"""Commands of any state and logging in: CAPABILITY, NOOP, LOGOUT, ID, ENABLE,
STARTTLS, LOGIN and AUTHENTICATE (PLAIN, LOGIN; SASL-IR).

Every failed login answers the same ``NO [AUTHENTICATIONFAILED]``, whether the user is
unknown or the password wrong; the operator log says which, by id. When the login
throttle's allowance for the address or the client is spent, or the Argon2 queue is
full, the answer is ``NO [UNAVAILABLE]`` at once, before any password is checked.
Plaintext logins are refused before TLS except from loopback when the configuration
allows it.

A user without a recovery code (keys made at the first login of an ISPmail row) is told
at every login, in an ``* OK [ALERT]`` before the tagged OK (RFC 3501 7.1), to sign in
to the web pages, which make one while the key is unlocked: IMAP has nowhere to show it.

A user whose old mail is staged (`import maildir --at-first-login`) has it imported
from this login on, in the background; the login says so in an ``* OK [ALERT]`` with
the progress, at every login while it runs.

A webmail host in ``auth.trusted_networks`` may name its user's address with the ID
field ``x-originating-ip``; the throttle then counts that address instead of the
host's. From anywhere else the field is ignored.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from typing import TYPE_CHECKING, Final

from cryptmail.errors import AuthenticationFailed, KdfBusy, TooManyAttempts
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.wire._requests import (
    Authenticate,
    Capability,
    Compress,
    Enable,
    Id,
    Login,
    Logout,
    Noop,
    StartTLS,
)
from cryptmail.imap.wire._response import Atom, tagged, untagged
from cryptmail.keys import has_recovery_code
from cryptmail.plainauth import PlainRejected, parse_plain
from cryptmail.secret import Password
from cryptmail.store import create_default_mailboxes, reseal_old_fields

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

log = logging.getLogger(__name__)

_FAILED: Final = "Authentication failed."
_BUSY: Final = "Too many login attempts; try again later."
_ORIGINATING_IP: Final = "x-originating-ip"
_NO_RECOVERY_CODE: Final = (
    b"* OK [ALERT] You have no recovery code: if you forget your password, your mail is "
    b"lost. Sign in to the web pages of your mail account to get one.\r\n"
)
_IMPORTING: Final = (
    b"* OK [ALERT] Your old mail is being imported: %d of %d messages so far. It appears "
    b"in your folders as it comes in.\r\n"
)
_MAX_ADDRESS: Final = 320


async def capability(session: Session, command: Capability) -> bytes:
    await session.send(b"* CAPABILITY " + session.capabilities().encode() + b"\r\n")
    return tagged(command.tag, "OK", "Capability completed.")


async def noop(session: Session, command: Noop) -> bytes:
    return tagged(command.tag, "OK", "NOOP completed.")


async def logout(session: Session, command: Logout) -> bytes:
    await session.writes.finish()  # OK only once what the session wrote is written
    await session.send(b"* BYE Logging out.\r\n")
    session.logged_out = True
    return tagged(command.tag, "OK", "Logout completed.")


async def identify(session: Session, command: Id) -> bytes:
    if command.parameters and session.context.throttle.is_trusted(session.peer_ip):
        for field, value in command.parameters:
            if field.lower() == _ORIGINATING_IP and value is not None:
                try:
                    session.origin_ip = str(ipaddress.ip_address(value.strip()))
                except ValueError:
                    log.info("IMAP ID from a trusted host: unusable %s ignored", _ORIGINATING_IP)
    await session.send(untagged(Atom("ID"), ["name", "cryptmail"]))
    return tagged(command.tag, "OK", "ID completed.")


async def enable(session: Session, command: Enable) -> bytes:
    enabled = []
    for name in command.capabilities:
        if name == "IMAP4REV2" and "IMAP4rev2" not in session.enabled:
            # RFC 9051 (appendix E): rev2 answers from now on, UTF-8 names included.
            session.enabled.add("IMAP4rev2")
            session.commands.utf8_names = True
            if session.selected is not None:
                session.selected.rev2 = True
            enabled.append("IMAP4rev2")
        if name == "UTF8=ACCEPT" and name not in session.enabled:
            # RFC 6855: from the next command on, mailbox names are UTF-8 both ways.
            session.enabled.add(name)
            session.commands.utf8_names = True
            enabled.append(name)
        if name in ("CONDSTORE", "QRESYNC") and name not in session.enabled:
            session.enabled.add(name)
            enabled.append(name)
            if name == "QRESYNC":
                session.enabled.add("CONDSTORE")
    if session.selected is not None and session.enabled & {"CONDSTORE", "QRESYNC"}:
        session.selected.condstore = True
        session.selected.qresync = "QRESYNC" in session.enabled
    await session.send(b"* ENABLED" + b"".join(b" " + n.encode() for n in enabled) + b"\r\n")
    return tagged(command.tag, "OK", "Enabled.")


async def starttls(session: Session, command: StartTLS) -> bytes:
    if session.tls_active or session.context.ssl_context is None:
        raise CommandFailed("TLS is already active.", status="BAD")
    await session.start_tls(command.tag)
    return b""


async def compress(session: Session, command: Compress) -> bytes:
    """RFC 4978: DEFLATE, once per connection."""
    if command.mechanism != "DEFLATE":
        raise CommandFailed("Unknown compression mechanism.", status="BAD")
    if session.compression is not None:
        raise CommandFailed("DEFLATE is active already.", "[COMPRESSIONACTIVE]")
    await session.start_compress(command.tag)
    return b""


async def _log_in(session: Session, address: str, password: Password) -> None:
    """Unlock the account or raise CommandFailed with the one opaque answer."""
    context = session.context
    if not session.plaintext_login_allowed:
        raise CommandFailed(
            "Plaintext authentication disallowed on non-secure connections.",
            "[PRIVACYREQUIRED]",
        )
    if not address or len(address) > _MAX_ADDRESS:
        raise CommandFailed(_FAILED, "[AUTHENTICATIONFAILED]")
    client_ip = session.origin_ip or session.peer_ip
    try:
        account, generation = await context.throttle.check(
            address,
            client_ip,
            lambda: context.accounts.acquire_with_generation(
                address, password, client_ip=client_ip
            ),
            protocol="imap",
        )
    except TooManyAttempts as exc:
        log.info("IMAP login refused by the throttle for %.0f s", exc.retry_after_s)
        raise CommandFailed(_BUSY, "[UNAVAILABLE]") from None
    except AuthenticationFailed as exc:
        log.info("IMAP login failed (%s)", exc.detail or "no detail")
        raise CommandFailed(_FAILED, "[AUTHENTICATIONFAILED]") from None
    except KdfBusy:
        log.warning("IMAP login refused: the Argon2 queue is full (crypto.argon2.max_queued)")
        raise CommandFailed(_BUSY, "[UNAVAILABLE]") from None
    try:
        await create_default_mailboxes(context.engine, account.user.id)
        await reseal_old_fields(context.engine, account)
    except BaseException:
        context.accounts.release(account)
        raise
    session.authenticated(account, generation)
    log.info("IMAP login of user id %d", account.user.id)
    if not await has_recovery_code(context.engine, account.user.id):
        await session.send(_NO_RECOVERY_CODE)
    if context.imports is not None:
        notice = await context.imports.after_login(account, password)
        if notice is not None:
            await session.send(_IMPORTING % (notice.done, notice.total))


def _logged_in(session: Session, tag: str) -> bytes:
    code = "[CAPABILITY " + session.capabilities() + "]"
    return tagged(tag, "OK", "Logged in.", code)


async def login(session: Session, command: Login) -> bytes:
    await _log_in(session, command.userid, command.password)
    return _logged_in(session, command.tag)


async def _sasl_response(session: Session, challenge: bytes) -> bytes:
    await session.send(b"+ " + challenge + b"\r\n")
    line = await session.read_client_line()
    if line.strip() == b"*":
        raise CommandFailed("Authentication cancelled.", status="BAD")
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CommandFailed("Invalid base64 in the SASL response.", status="BAD") from None


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandFailed(_FAILED, "[AUTHENTICATIONFAILED]") from None


async def authenticate(session: Session, command: Authenticate) -> bytes:
    mechanism = command.mechanism.upper()
    if mechanism not in ("PLAIN", "LOGIN"):
        raise CommandFailed("Unsupported authentication mechanism.")
    if not session.plaintext_login_allowed:
        raise CommandFailed(
            "Plaintext authentication disallowed on non-secure connections.",
            "[PRIVACYREQUIRED]",
        )
    initial = command.initial_response.reveal() if command.initial_response else None
    if mechanism == "PLAIN":
        data = initial if initial is not None else await _sasl_response(session, b"")
        try:
            plain = parse_plain(data)
        except PlainRejected as exc:
            if exc.fault == "malformed":
                raise CommandFailed("Invalid PLAIN response.", status="BAD") from None
            raise CommandFailed(_FAILED, "[AUTHENTICATIONFAILED]") from None
        address, password = plain.address, plain.password
    else:
        user = initial if initial else await _sasl_response(session, b"VXNlcm5hbWU6")
        secret = await _sasl_response(session, b"UGFzc3dvcmQ6")
        address, password = _text(user), Password(secret)
    _text(password.reveal())
    await _log_in(session, address, password)
    return _logged_in(session, command.tag)

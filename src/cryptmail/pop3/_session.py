"""One POP3 connection: the RFC 1939 states (AUTHORIZATION, TRANSACTION, UPDATE) and
their commands, read one line at a time so that pipelined commands (RFC 2449
PIPELINING) are answered in order.

A line that is no command, an unknown command, a command of the wrong state and a line
over the limit each get their -ERR and change nothing. Bytes pipelined after STLS are
refused and the connection closed: they came in plaintext (CVE-2011-0411), as IMAP's
STARTTLS refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import MessageNotFound, StoreError
from cryptmail.keys import LoginThrottle, UnlockedAccount, UnlockedAccounts
from cryptmail.listening import (
    MAX_BAD_COMMANDS,
    MAX_FAILED_LOGINS,
    PREAUTH_TIMEOUT_S,
    READ_SIZE,
    ConnectionCounts,
)
from cryptmail.plainauth import Credentials, LoginRefused
from cryptmail.pop3._login import (
    FAILED,
    PRIVACY,
    log_in,
    plain_credentials,
)
from cryptmail.pop3._maildrop import Entry, Maildrop
from cryptmail.pop3._wire import (
    TOO_LONG,
    Command,
    CommandError,
    LineReader,
    MessageWriter,
    err,
    multiline,
    ok,
    parse_command,
)
from cryptmail.secret import Password
from cryptmail.store import ChangeBus, FirstLoginImports
from cryptmail.store.blobs import BlobStore
from cryptmail.tasks import finish_then_cancel
from cryptmail.tls import PlaintextAfterStartTls, TlsHandshakeFailed, upgrade_stream

log = logging.getLogger(__name__)

_TEMP: Final = "SYS/TEMP"


@dataclass
class Pop3Context:
    """What every session of the POP3 listeners shares."""

    config: Config
    engine: AsyncEngine
    blobs: BlobStore
    bus: ChangeBus
    throttle: LoginThrottle
    accounts: UnlockedAccounts
    ssl_context: ssl.SSLContext | None
    connections: ConnectionCounts = field(default_factory=ConnectionCounts)
    """Open connections, over both listeners."""
    imports: FirstLoginImports | None = None


class State(Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    DONE = "done"


class _Closed(Exception):
    """The connection is over (client gone, timeout, or the server hung up)."""


class _Refused(Exception):
    """A command refused; `reply` is its -ERR line."""

    def __init__(self, reply: bytes) -> None:
        super().__init__("command refused")
        self.reply = reply


Handler = Callable[["Session", Command], Awaitable[bytes]]


class Session:
    """See the module docstring."""

    def __init__(
        self,
        context: Pop3Context,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_ip: str,
        tls_active: bool,
    ) -> None:
        self.context = context
        self._reader = reader
        self._writer = writer
        self._lines = LineReader()
        self.peer_ip = peer_ip
        self.tls_active = tls_active
        self.state = State.AUTHORIZATION
        self.user: str | None = None  # USER's argument, waiting for PASS
        self.failures = 0
        self.account: UnlockedAccount | None = None
        self.maildrop: Maildrop | None = None

    # -- facts ---------------------------------------------------------------------------

    @property
    def plaintext_login_allowed(self) -> bool:
        if self.tls_active:
            return True
        try:
            loopback = ipaddress.ip_address(self.peer_ip).is_loopback
        except ValueError:
            return False
        return loopback and self.context.config.pop3.allow_plaintext_login_on_loopback

    def capabilities(self) -> list[str]:
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if not self.tls_active and self.context.ssl_context is not None:
                caps.append("STLS")
            if self.plaintext_login_allowed:
                caps += ["USER", "SASL PLAIN"]
        caps.append("IMPLEMENTATION cryptmail")
        return caps

    # -- I/O -----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > READ_SIZE:
            await self._drain()

    async def _say(self, data: bytes) -> None:
        await self.send(data)
        await self._drain()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.context.config.pop3.idle_timeout_s):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise _Closed("the client stopped reading") from exc

    async def read_line(self) -> bytes | None:
        """The next client line; None for one over the limit (already answered)."""
        while True:
            line = self._lines.next_line()
            if line is TOO_LONG:
                await self.send(err("Line is too long."))
                return None
            if isinstance(line, bytes):
                return line
            await self._drain()
            limit = float(self.context.config.pop3.idle_timeout_s)
            if self.state is State.AUTHORIZATION:
                limit = min(limit, PREAUTH_TIMEOUT_S)
            try:
                async with asyncio.timeout(limit):
                    data = await self._reader.read(READ_SIZE)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    self._writer.write(err("Disconnected for inactivity."))
                raise _Closed("idle timeout") from None
            except OSError as exc:
                raise _Closed("read failed") from exc
            if not data:
                raise _Closed("the client closed the connection")
            self._lines.feed(data)

    def _unread(self) -> int:
        # asyncio has no public accessor for the StreamReader's read-ahead.
        stream_buffer: bytearray = getattr(self._reader, "_buffer", bytearray())
        return self._lines.buffered + len(stream_buffer)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.send(ok("cryptmail POP3 ready."))
            bad = 0
            while self.state is not State.DONE:
                if bad > MAX_BAD_COMMANDS:
                    await self.send(err("Too many bad commands."))
                    break
                line = await self.read_line()
                if line is None:
                    bad += 1
                    continue
                try:
                    command = parse_command(line)
                except CommandError as exc:
                    await self.send(err(str(exc)))
                    bad += 1
                    continue
                reply = await self._dispatch(command)
                bad = bad + 1 if reply.startswith(b"-ERR") else 0
                await self.send(reply)
            await self._drain()
        except _Closed:
            pass
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._writer.write(err("Server shutting down.", _TEMP))
            raise
        finally:
            await self.close()

    async def _dispatch(self, command: Command) -> bytes:
        table = _AUTHORIZATION if self.state is State.AUTHORIZATION else _TRANSACTION
        handler = table.get(command.verb)
        if handler is None:
            known = command.verb in _AUTHORIZATION or command.verb in _TRANSACTION
            return err("Command not valid in this state." if known else "Unknown command.")
        try:
            return await handler(self, command)
        except (LoginRefused, _Refused) as exc:
            return exc.reply
        except MessageNotFound:
            return err("The message was deleted by another session.")
        except StoreError:
            log.exception("POP3 command %s failed", command.verb)
            return err("The mailbox could not be read; try again later.", _TEMP)

    async def close(self) -> None:
        drop, self.maildrop = self.maildrop, None
        try:
            if drop is not None:
                # Ended without QUIT (QUIT clears the maildrop): nothing is deleted, but
                # what was retrieved is marked \\Seen, as Dovecot does. To its end even
                # through a stop (which then waits for the session), never left running
                # on its own past the session and the engine's dispose.
                try:
                    await finish_then_cancel(drop.mark_seen(self.context.bus))
                except StoreError:
                    log.warning("POP3 session end could not mark retrieved messages seen")
        finally:
            if self.account is not None:
                self.context.accounts.release(self.account)
                self.account = None
            self._writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._writer.wait_closed()

    # -- AUTHORIZATION -------------------------------------------------------------------

    async def capa(self, command: Command) -> bytes:
        return multiline(ok("Capability list follows."), self.capabilities())

    async def quit(self, command: Command) -> bytes:
        self.state = State.DONE
        drop, self.maildrop = self.maildrop, None
        if drop is None:
            return ok("Logging out.")
        try:
            # A server stop must not cut the update in half, nor leave it running alone
            # past the session (the stop waits for the session, then the engine goes).
            done = await finish_then_cancel(drop.commit(self.context.bus))
        except StoreError:
            log.exception("POP3 QUIT could not update the mailbox")
            return err("Deleted messages were not removed; try again.", _TEMP)
        log.info("POP3 logout: %d expunged, %d marked seen", done.expunged, done.seen)
        return ok(f"Logging out, {done.expunged} messages deleted.")

    async def stls(self, command: Command) -> bytes:
        context = self.context.ssl_context
        if self.tls_active or context is None:
            return err("TLS is already active." if self.tls_active else "TLS is not offered.")
        try:
            await upgrade_stream(
                self._writer,
                context,
                plaintext_left=self._unread,
                say=self._say,
                go_ahead=ok("Begin TLS negotiation now."),
                refusal=err("STLS must be the last command before the TLS handshake."),
            )
        except (PlaintextAfterStartTls, TlsHandshakeFailed) as exc:
            raise _Closed(str(exc)) from exc
        self.tls_active = True
        self._lines = LineReader()
        self.user = None
        return b""

    async def user_command(self, command: Command) -> bytes:
        if not self.plaintext_login_allowed:
            return PRIVACY
        if len(command.args) != 1:
            return err("USER takes one argument, the address.")
        self.user = command.args[0]
        return ok("Send PASS.")

    async def pass_command(self, command: Command) -> bytes:
        user, self.user = self.user, None
        if user is None:
            return err("Send USER first.")
        if not self.plaintext_login_allowed:
            return PRIVACY
        password = command.args[0] if command.args else ""
        return await self._log_in(Credentials(user, Password.from_str(password)))

    async def auth(self, command: Command) -> bytes:
        if not command.args:  # the mechanism list some clients ask for (RFC 1734 usage)
            return multiline(ok("Mechanisms follow."), ["PLAIN"])
        if command.args[0].upper() != "PLAIN":
            return err("Unsupported authentication mechanism.")
        if not self.plaintext_login_allowed:
            return PRIVACY
        if len(command.args) == 2:
            response = "" if command.args[1] == "=" else command.args[1]
        else:
            await self.send(b"+ \r\n")
            line = await self.read_line()
            if line is None:
                return b""  # answered: the line was too long
            response = line.decode("ascii", "replace").strip()
            if response == "*":
                return err("Authentication cancelled.")
            if response == "=":
                response = ""
        return await self._log_in(plain_credentials(response))

    async def _log_in(self, credentials: Credentials) -> bytes:
        context = self.context
        try:
            account = await log_in(
                context.engine, context.throttle, context.accounts, credentials, self.peer_ip
            )
        except LoginRefused as exc:
            if exc.reply == FAILED:
                self.failures += 1
                if self.failures >= MAX_FAILED_LOGINS:
                    self.state = State.DONE
            raise
        self.account = account
        if context.imports is not None:
            # Started, not awaited: the maildrop shows what is in so far.
            await context.imports.after_login(account, credentials.password)
        try:
            self.maildrop = await Maildrop.load(context.engine, context.blobs, account)
        except StoreError:
            log.exception("POP3 maildrop of user id %d could not be read", account.user.id)
            self.state = State.DONE
            return err("The mailbox could not be read; try again later.", _TEMP)
        self.state = State.TRANSACTION
        count, octets = self.maildrop.stat()
        return ok(f"Logged in, {count} messages ({octets} octets).")

    # -- TRANSACTION ---------------------------------------------------------------------

    @property
    def drop(self) -> Maildrop:
        assert self.maildrop is not None  # noqa: S101 - only in TRANSACTION
        return self.maildrop

    def _message(self, argument: str) -> Entry:
        if not argument.isdigit() or len(argument) > 9:
            raise _Refused(err("Invalid message number."))
        entry = self.drop.get(int(argument))
        if entry is None:
            raise _Refused(err("There is no such message."))
        return entry

    async def stat(self, command: Command) -> bytes:
        if command.args:
            return err("STAT takes no argument.")
        count, octets = self.drop.stat()
        return ok(f"{count} {octets}")

    async def list_command(self, command: Command) -> bytes:
        if len(command.args) > 1:
            return err("LIST takes one message number at most.")
        if command.args:
            entry = self._message(command.args[0])
            return ok(f"{command.args[0].lstrip('0')} {entry.size}")
        count, octets = self.drop.stat()
        lines = [f"{n} {e.size}" for n, e in self.drop.listed()]
        return multiline(ok(f"{count} messages ({octets} octets)"), lines)

    async def uidl_command(self, command: Command) -> bytes:
        if len(command.args) > 1:
            return err("UIDL takes one message number at most.")
        if command.args:
            entry = self._message(command.args[0])
            return ok(f"{command.args[0].lstrip('0')} {self.drop.uidl(entry)}")
        lines = [f"{n} {self.drop.uidl(e)}" for n, e in self.drop.listed()]
        return multiline(ok("Unique-ID listing follows."), lines)

    async def retr(self, command: Command) -> bytes:
        if len(command.args) != 1:
            return err("RETR takes one message number.")
        entry = self._message(command.args[0])
        await self._send_message(entry, MessageWriter(), ok(f"{entry.size} octets"))
        entry.retrieved = True
        return b""

    async def top(self, command: Command) -> bytes:
        if len(command.args) != 2:
            return err("TOP takes a message number and a number of lines.")
        entry = self._message(command.args[0])
        lines = command.args[1]
        if not lines.isdigit() or len(lines) > 9:
            return err("Invalid number of lines.")
        await self._send_message(entry, MessageWriter(int(lines)), ok("Top of message follows."))
        return b""

    async def _send_message(self, entry: Entry, writer: MessageWriter, first: bytes) -> None:
        # Nothing is sent before the first piece is read and verified, so a message
        # that cannot be read still gets its -ERR instead of a cut +OK.
        pieces = self.drop.read(entry)
        try:
            first_piece = await anext(pieces, b"")
            await self.send(first + writer.feed(first_piece))
            try:
                async for piece in pieces:
                    if writer.done:
                        break
                    await self.send(writer.feed(piece))
            except StoreError:
                # A piece failed verification after +OK went out: the reply cannot be
                # finished honestly, so the connection ends (no lone dot is sent).
                log.exception("POP3 message %d failed mid-way", entry.row.id)
                raise _Closed("a message failed mid-way") from None
        finally:
            await pieces.aclose()
        await self.send(writer.finish())

    async def dele(self, command: Command) -> bytes:
        if len(command.args) != 1:
            return err("DELE takes one message number.")
        entry = self._message(command.args[0])
        entry.deleted = True
        return ok("Message marked for deletion.")

    async def noop(self, command: Command) -> bytes:
        return b"+OK\r\n"

    async def rset(self, command: Command) -> bytes:
        self.drop.reset()
        count, octets = self.drop.stat()
        return ok(f"{count} messages ({octets} octets)")


_AUTHORIZATION: Final[dict[str, Handler]] = {
    "CAPA": Session.capa,
    "QUIT": Session.quit,
    "STLS": Session.stls,
    "USER": Session.user_command,
    "PASS": Session.pass_command,
    "AUTH": Session.auth,
}
_TRANSACTION: Final[dict[str, Handler]] = {
    "CAPA": Session.capa,
    "QUIT": Session.quit,
    "STAT": Session.stat,
    "LIST": Session.list_command,
    "UIDL": Session.uidl_command,
    "RETR": Session.retr,
    "TOP": Session.top,
    "DELE": Session.dele,
    "NOOP": Session.noop,
    "RSET": Session.rset,
}

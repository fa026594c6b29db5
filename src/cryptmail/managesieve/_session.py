"""One ManageSieve connection (RFC 5804): the states (not authenticated, authenticated)
and their commands, one command at a time.

A line that is no command, an unknown command, a command of the wrong state, a literal
over its limit and a line over MAX_LINE each get their NO and change nothing; a literal
that is refused is read and thrown away, so the next command is read where it starts.
Every change of the user's scripts is one transaction of sieve/_scripts.py: a client
that disconnects in the middle of PUTSCRIPT leaves the old script as it was. Bytes
pipelined after STARTTLS are refused and the connection closed: they came in
plaintext (CVE-2011-0411), as IMAP's and POP3's STARTTLS refuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.config import Config
from cryptmail.errors import (
    DatabaseError,
    ObjectTampered,
    ScriptActive,
    ScriptError,
    ScriptExists,
    ScriptNotFound,
    ScriptQuotaExceeded,
    SieveSyntaxError,
    StoreError,
    StoreUnavailable,
)
from cryptmail.keys import CredentialWatcher, LoginThrottle, Watch
from cryptmail.listening import (
    MAX_BAD_COMMANDS,
    MAX_FAILED_LOGINS,
    PREAUTH_TIMEOUT_S,
    READ_SIZE,
    ConnectionCounts,
)
from cryptmail.managesieve._login import (
    FAILED,
    LoggedIn,
    log_in,
    plain_credentials,
)
from cryptmail.managesieve._wire import (
    MAX_LINE,
    Number,
    WireError,
    Word,
    bye,
    capability_lines,
    literal,
    no,
    ok,
    parse_line,
    quote,
    trailing_literal,
)
from cryptmail.plainauth import LoginRefused
from cryptmail.sieve import (
    SUPPORTED_EXTENSIONS,
    ScriptLimits,
    ServerAbilities,
    compile_script,
    delete_script,
    get_script,
    have_space,
    list_scripts,
    put_script,
    rename_script,
    script_warnings,
    set_active,
    warnings_text,
)
from cryptmail.tls import PlaintextAfterStartTls, TlsHandshakeFailed, upgrade_stream

log = logging.getLogger(__name__)

PREAUTH_LITERAL: Final = 8192
"""Largest literal before login (an AUTHENTICATE response), and of any name."""
_TRYLATER: Final = "TRYLATER"


@dataclass
class ManagesieveContext:
    """What every session of the listener shares."""

    config: Config
    engine: AsyncEngine
    throttle: LoginThrottle
    ssl_context: ssl.SSLContext | None
    watcher: CredentialWatcher | None = None
    """Ends sessions whose password changed or app password was revoked; None: kept."""
    connections: ConnectionCounts = field(default_factory=ConnectionCounts)
    """Open connections, in all and per client address."""

    @property
    def limits(self) -> ScriptLimits:
        return ScriptLimits.from_config(self.config)


class _Closed(Exception):
    """The connection is over (client gone, timeout, or the server hung up)."""


class _Refused(Exception):
    """A command refused; `reply` is its NO line."""

    def __init__(self, reply: bytes) -> None:
        super().__init__("command refused")
        self.reply = reply


class _LineTooLong(Exception):
    """A line over MAX_LINE, skipped up to its end."""


Handler = Callable[["Session", list[Word]], Awaitable[bytes]]


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + "."


def _error_reply(exc: StoreError) -> bytes:
    """One table: the store's errors to NO with RFC 5804 response codes."""
    if isinstance(exc, ScriptNotFound):
        return no("There is no script of that name.", "NONEXISTENT")
    if isinstance(exc, ScriptExists):
        return no("A script of that name exists already.", "ALREADYEXISTS")
    if isinstance(exc, ScriptActive):
        return no("The active script cannot be deleted; deactivate it first.", "ACTIVE")
    if isinstance(exc, ScriptQuotaExceeded):
        return no(_sentence(exc), f"QUOTA/{exc.limit}")
    if isinstance(exc, ScriptError):
        return no(_sentence(exc))
    if isinstance(exc, StoreUnavailable):
        return no("The scripts cannot be reached now; try again later.", _TRYLATER)
    if isinstance(exc, ObjectTampered):
        return no("A stored script could not be read; the operator was told.")
    return no("The scripts could not be changed; try again later.", _TRYLATER)


def _syntax_reply(exc: SieveSyntaxError) -> bytes:
    where = f"line {exc.line}: " if exc.line is not None else ""
    return no(f"{where}{exc.reason}")


class Session:
    """See the module docstring."""

    def __init__(
        self,
        context: ManagesieveContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_ip: str,
    ) -> None:
        self.context = context
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self.peer_ip = peer_ip
        self.tls_active = False
        self.user: LoggedIn | None = None
        self.failures = 0
        self.done = False
        self.credentials_changed = False
        self._watch: Watch | None = None
        self._read_deadline: asyncio.Timeout | None = None

    # -- facts ---------------------------------------------------------------------------

    @property
    def plaintext_login_allowed(self) -> bool:
        if self.tls_active:
            return True
        try:
            loopback = ipaddress.ip_address(self.peer_ip).is_loopback
        except ValueError:
            return False
        return loopback and self.context.config.managesieve.allow_plaintext_login_on_loopback

    def capabilities(self) -> bytes:
        items: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", "cryptmail"),
            ("SASL", "PLAIN" if self.plaintext_login_allowed else ""),
            ("SIEVE", " ".join(SUPPORTED_EXTENSIONS)),
        ]
        if not self.tls_active and self.context.ssl_context is not None and self.user is None:
            items.append(("STARTTLS", None))
        items += [
            ("MAXREDIRECTS", str(self.context.config.sieve.max_redirects)),
            ("VERSION", "1.0"),
            ("UNAUTHENTICATE", None),
        ]
        if self.user is not None:
            items.append(("OWNER", self.user.address))
        return capability_lines(items)

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
            async with asyncio.timeout(self.context.config.managesieve.idle_timeout_s):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise _Closed("the client stopped reading") from exc

    async def _fill(self) -> None:
        await self._drain()
        limit = float(self.context.config.managesieve.idle_timeout_s)
        if self.user is None:
            limit = min(limit, PREAUTH_TIMEOUT_S)
        try:
            async with asyncio.timeout(limit) as deadline:
                self._read_deadline = deadline
                self._check_credentials()
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            self._check_credentials()
            with contextlib.suppress(OSError):
                self._writer.write(bye("Disconnected for inactivity."))
            raise _Closed("idle timeout") from None
        except OSError as exc:
            raise _Closed("read failed") from exc
        finally:
            self._read_deadline = None
        if not data:
            raise _Closed("the client closed the connection")
        self._buffer += data

    async def _line(self) -> bytes:
        """The next line without its CRLF (or bare LF); _LineTooLong, once its end has
        been read, for one over MAX_LINE."""
        skipping = False
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if skipping or end + 1 > MAX_LINE:
                    raise _LineTooLong()
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buffer) >= MAX_LINE:
                self._buffer.clear()  # none of it will be used: keep no more in memory
                skipping = True
            await self._fill()

    async def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _skip(self, size: int) -> None:
        """Read and drop `size` octets, without holding more than one read of them."""
        while size > 0:
            if not self._buffer:
                await self._fill()
            taken = min(size, len(self._buffer))
            del self._buffer[:taken]
            size -= taken

    def _unread(self) -> int:
        # asyncio has no public accessor for the StreamReader's read-ahead.
        stream_buffer: bytearray = getattr(self._reader, "_buffer", bytearray())
        return len(self._buffer) + len(stream_buffer)

    def _literal_limit(self, words: list[Word]) -> int:
        if self.user is None:
            return PREAUTH_LITERAL
        if words and words[0] in ("PUTSCRIPT", "CHECKSCRIPT"):
            return max(self.context.config.sieve.max_script_size, PREAUTH_LITERAL)
        return PREAUTH_LITERAL

    def _oversize_reply(self, words: list[Word], size: int) -> bytes:
        if self.user is not None and words and words[0] in ("PUTSCRIPT", "CHECKSCRIPT"):
            limit = self.context.config.sieve.max_script_size
            return no(
                f"The script is {size} bytes, more than the limit of {limit}.",
                "QUOTA/MAXSIZE",
            )
        return no("The literal is too large.")

    async def read_command(self) -> list[Word]:
        """The next command's words, literals read in. _Refused (the whole command read
        and dropped) for a malformed one or a literal over its limit."""
        words: list[Word] = []
        refusal: bytes | None = None
        first = True
        while True:
            try:
                line = await self._line()
            except _LineTooLong:
                raise _Refused(refusal or no("The line is too long.")) from None
            try:
                part, announced = parse_line(line, first=first)
            except WireError as exc:
                # Still read a literal the broken line announced, so that its octets
                # are not taken for commands.
                size = trailing_literal(line)
                refusal = refusal or no(str(exc))
                if size is None:
                    raise _Refused(refusal) from None
                await self._skip(size)
                first = False
                continue
            words += part
            if announced is None:
                break
            if refusal is not None or announced.size > self._literal_limit(words):
                refusal = refusal or self._oversize_reply(words, announced.size)
                await self._skip(announced.size)
            else:
                words.append(await self._exact(announced.size))
            first = False
        if refusal is not None:
            raise _Refused(refusal)
        return words

    # -- credentials ---------------------------------------------------------------------

    def _logged_in(self, user: LoggedIn) -> None:
        self.user = user
        watcher = self.context.watcher
        if watcher is not None:
            self._watch = watcher.watch(user.user_id, user.generation, self._on_change)

    def _logged_out(self) -> None:
        self.user = None
        if self._watch is not None and self.context.watcher is not None:
            self.context.watcher.unwatch(self._watch)
        self._watch = None

    def _on_change(self) -> None:
        # Called by the watcher's task: wake the read in progress; a command in
        # progress finishes, and the session ends before the next one.
        self.credentials_changed = True
        if self._read_deadline is not None:
            with contextlib.suppress(RuntimeError):
                self._read_deadline.reschedule(asyncio.get_running_loop().time())

    def _check_credentials(self) -> None:
        if self.credentials_changed:
            with contextlib.suppress(OSError):
                self._writer.write(bye("Your password or app password changed; log in again."))
            raise _Closed("credentials changed")

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.send(self.capabilities() + ok("cryptmail ManageSieve ready."))
            bad = 0
            while not self.done:
                if bad > MAX_BAD_COMMANDS:
                    await self.send(bye("Too many bad commands."))
                    break
                try:
                    words = await self.read_command()
                except _Refused as exc:
                    await self.send(exc.reply)
                    bad += 1
                    continue
                self._check_credentials()
                reply, understood = await self._dispatch(words)
                bad = 0 if understood else bad + 1
                await self.send(reply)
            await self._drain()
        except _Closed:
            pass
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._writer.write(bye("Server shutting down.", _TRYLATER))
            raise
        finally:
            await self.close()

    async def _dispatch(self, words: list[Word]) -> tuple[bytes, bool]:
        """The reply, and whether the command was one of this state (bad ones in a row
        close the connection; a refused script request is not a bad command)."""
        verb = words[0]
        assert isinstance(verb, str)  # noqa: S101 - parse_line puts the name first
        table = _UNAUTHENTICATED if self.user is None else _AUTHENTICATED
        handler = table.get(verb)
        if handler is None:
            known = verb in _UNAUTHENTICATED or verb in _AUTHENTICATED
            return no("Command not valid in this state." if known else "Unknown command."), False
        return await self._run(verb, handler, words[1:]), True

    async def _run(self, verb: str, handler: Handler, args: list[Word]) -> bytes:
        try:
            return await handler(self, args)
        except (LoginRefused, _Refused) as exc:
            return exc.reply
        except SieveSyntaxError as exc:
            return _syntax_reply(exc)
        except ObjectTampered:
            log.exception("ManageSieve %s: a stored script failed authentication", verb)
            return _error_reply(ObjectTampered("script"))
        except StoreUnavailable as exc:
            log.warning("ManageSieve %s: %s", verb, exc)
            return _error_reply(exc)
        except StoreError as exc:
            if not isinstance(exc, ScriptError | ScriptQuotaExceeded):
                log.exception("ManageSieve %s failed", verb)
            return _error_reply(exc)
        except DatabaseError:
            # A statement the database refused (not a transient failure): a bug or a
            # broken schema, for the operator; the session goes on.
            log.exception("ManageSieve %s: the database refused a statement", verb)
            return no("The scripts could not be read or changed; the operator was told.")

    async def close(self) -> None:
        self._logged_out()
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._writer.wait_closed()

    # -- arguments -----------------------------------------------------------------------

    @staticmethod
    def _strings(args: list[Word], count: int, usage: str) -> list[str]:
        if len(args) != count or not all(isinstance(a, bytes) for a in args):
            raise _Refused(no(usage))
        try:
            return [a.decode("utf-8") for a in args if isinstance(a, bytes)]
        except UnicodeDecodeError:
            raise _Refused(no("Strings must be UTF-8.")) from None

    def _owner(self) -> LoggedIn:
        assert self.user is not None  # noqa: S101 - only in the authenticated state
        return self.user

    # -- any state -----------------------------------------------------------------------

    async def capability(self, args: list[Word]) -> bytes:
        if args:
            return no("CAPABILITY takes no argument.")
        return self.capabilities() + ok("Capability completed.")

    async def logout(self, args: list[Word]) -> bytes:
        self.done = True
        return ok("Logout completed.")

    async def noop(self, args: list[Word]) -> bytes:
        if not args:
            return ok("Done.")
        (tag,) = self._strings(args, 1, 'NOOP takes one string at most: NOOP ["tag"].')
        return ok("Done.", "TAG " + quote(tag).decode("utf-8"))

    # -- not authenticated ---------------------------------------------------------------

    async def starttls(self, args: list[Word]) -> bytes:
        context = self.context.ssl_context
        if self.tls_active or context is None:
            return no("TLS is already active." if self.tls_active else "TLS is not offered.")
        try:
            await upgrade_stream(
                self._writer,
                context,
                plaintext_left=self._unread,
                say=self._say,
                go_ahead=ok("Begin TLS negotiation now."),
                refusal=bye("STARTTLS must be the last command before the TLS handshake."),
            )
        except (PlaintextAfterStartTls, TlsHandshakeFailed) as exc:
            raise _Closed(str(exc)) from exc
        self.tls_active = True
        self._buffer.clear()
        # RFC 5804 2.2: the capabilities again, now that TLS is on.
        return self.capabilities() + ok("TLS negotiation successful.")

    async def authenticate(self, args: list[Word]) -> bytes:
        if not args or len(args) > 2 or not all(isinstance(a, bytes) for a in args):
            return no('AUTHENTICATE takes a mechanism and an initial response: "PLAIN" ["..."].')
        mechanism = args[0]
        assert isinstance(mechanism, bytes)  # noqa: S101 - checked above
        if mechanism.upper() != b"PLAIN":
            return no("Unsupported authentication mechanism.")
        if not self.plaintext_login_allowed:
            return no("Plaintext authentication is allowed only after STARTTLS.", "ENCRYPT-NEEDED")
        if len(args) == 2:
            response = args[1]
            assert isinstance(response, bytes)  # noqa: S101 - checked above
        else:
            await self.send(b'""\r\n')  # an empty challenge: PLAIN has none
            response = await self._sasl_response()
        return await self._log_in(response)

    async def _sasl_response(self) -> bytes:
        """The client's answer to a challenge: one string on its own line."""
        try:
            words = await self.read_command_continuation()
        except _Refused as exc:
            raise LoginRefused(exc.reply) from None
        if len(words) != 1 or not isinstance(words[0], bytes):
            raise LoginRefused(no("Expected the SASL response as one string."))
        if words[0] == b"*":
            raise LoginRefused(no("Authentication cancelled."))
        return words[0]

    async def read_command_continuation(self) -> list[Word]:
        """A line of strings that is no command (a SASL response), literals read in."""
        words: list[Word] = []
        while True:
            try:
                line = await self._line()
            except _LineTooLong:
                raise _Refused(no("The line is too long.")) from None
            try:
                part, announced = parse_line(b"X " + line, first=True)
            except WireError as exc:
                raise _Refused(no(str(exc))) from None
            words += part[1:]
            if announced is None:
                return words
            if announced.size > PREAUTH_LITERAL:
                await self._skip(announced.size)
                raise _Refused(no("The literal is too large."))
            words.append(await self._exact(announced.size))
            # The line after a literal continues the response.
            rest = await self._line()
            if rest:
                raise _Refused(no("Expected the end of the SASL response."))
            return words

    async def _log_in(self, response: bytes) -> bytes:
        context = self.context
        try:
            credentials = plain_credentials(response)
            user = await log_in(
                context.engine,
                context.config.crypto,
                context.throttle,
                credentials,
                self.peer_ip,
            )
        except LoginRefused as exc:
            if exc.reply == FAILED:
                self.failures += 1
                if self.failures >= MAX_FAILED_LOGINS:
                    self.done = True
                    return bye("Too many failed logins.")
            raise
        self._logged_in(user)
        return ok("Logged in.")

    # -- authenticated -------------------------------------------------------------------

    async def unauthenticate(self, args: list[Word]) -> bytes:
        if args:
            return no("UNAUTHENTICATE takes no argument.")
        self._logged_out()
        return ok("Unauthenticated.")

    async def havespace(self, args: list[Word]) -> bytes:
        if len(args) != 2 or not isinstance(args[0], bytes) or not isinstance(args[1], Number):
            return no('HAVESPACE takes a name and a size: HAVESPACE "name" 1234.')
        (name,) = self._strings(args[:1], 1, "")
        owner = self._owner()
        await have_space(
            self.context.engine, owner.user_id, name, args[1].value, self.context.limits
        )
        return ok()

    def _global_script(self, name: str) -> bool:
        folder = self.context.config.sieve.global_dir
        if not folder or "/" in name or name.startswith(".") or "\0" in name:
            return False
        return (Path(folder) / f"{name}.sieve").is_file()

    def _stored(self, done: str, warnings: list[str]) -> bytes:
        """OK, or OK (WARNINGS) with what the script will not do here (RFC 5804 1.3)."""
        if not warnings:
            return ok(done)
        return ok(warnings_text(warnings), "WARNINGS")

    async def _compile(self, name: str, text: bytes) -> tuple[str, list[str]]:
        try:
            script = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(no("A script must be UTF-8.")) from None
        sieve = self.context.config.sieve
        limit = sieve.max_script_size
        if len(text) > limit:
            raise _Refused(
                no(
                    f"The script is {len(text)} bytes, more than the limit of {limit}.",
                    "QUOTA/MAXSIZE",
                )
            )
        # Off the loop: a script of thousands of rules takes a while to parse.
        compiled = await run_blocking(
            compile_script, script, name=name, max_size=limit, max_commands=sieve.max_commands
        )
        server = ServerAbilities(relay=bool(sieve.smtp_relay), global_script=self._global_script)
        return script, script_warnings(compiled, server)

    async def putscript(self, args: list[Word]) -> bytes:
        text = args[1] if len(args) == 2 else None
        if not isinstance(text, bytes):
            return no('PUTSCRIPT takes a name and a script: PUTSCRIPT "name" {n+}.')
        (name,) = self._strings(args[:1], 1, 'PUTSCRIPT takes a name: PUTSCRIPT "name" {n+}.')
        owner = self._owner()
        script, warnings = await self._compile(name, text)
        await put_script(self.context.engine, owner.user_id, name, script, self.context.limits)
        log.info("ManageSieve: user id %d stored a script (%d bytes)", owner.user_id, len(text))
        return self._stored("Script stored.", warnings)

    async def checkscript(self, args: list[Word]) -> bytes:
        if len(args) != 1 or not isinstance(args[0], bytes):
            return no("CHECKSCRIPT takes a script: CHECKSCRIPT {n+}.")
        _, warnings = await self._compile("checkscript", args[0])
        return self._stored("The script is valid.", warnings)

    async def listscripts(self, args: list[Word]) -> bytes:
        if args:
            return no("LISTSCRIPTS takes no argument.")
        scripts = await list_scripts(self.context.engine, self._owner().user_id)
        lines = b"".join(
            quote(s.name) + (b" ACTIVE" if s.active else b"") + b"\r\n" for s in scripts
        )
        return lines + ok("Listscripts completed.")

    async def setactive(self, args: list[Word]) -> bytes:
        (name,) = self._strings(args, 1, 'SETACTIVE takes a name: SETACTIVE "name" (or "").')
        await set_active(self.context.engine, self._owner().user_id, name)
        return ok("Active script set." if name else "No script is active now.")

    async def getscript(self, args: list[Word]) -> bytes:
        (name,) = self._strings(args, 1, 'GETSCRIPT takes a name: GETSCRIPT "name".')
        text = await get_script(self.context.engine, self._owner().user_id, name)
        return literal(text.encode("utf-8")) + b"\r\n" + ok("Getscript completed.")

    async def deletescript(self, args: list[Word]) -> bytes:
        (name,) = self._strings(args, 1, 'DELETESCRIPT takes a name: DELETESCRIPT "name".')
        await delete_script(self.context.engine, self._owner().user_id, name)
        return ok("Script deleted.")

    async def renamescript(self, args: list[Word]) -> bytes:
        old, new = self._strings(args, 2, 'RENAMESCRIPT takes two names: RENAMESCRIPT "old" "new".')
        await rename_script(self.context.engine, self._owner().user_id, old, new)
        return ok("Script renamed.")


_UNAUTHENTICATED: Final[dict[str, Handler]] = {
    "CAPABILITY": Session.capability,
    "LOGOUT": Session.logout,
    "NOOP": Session.noop,
    "STARTTLS": Session.starttls,
    "AUTHENTICATE": Session.authenticate,
}
_AUTHENTICATED: Final[dict[str, Handler]] = {
    "CAPABILITY": Session.capability,
    "LOGOUT": Session.logout,
    "NOOP": Session.noop,
    "UNAUTHENTICATE": Session.unauthenticate,
    "HAVESPACE": Session.havespace,
    "PUTSCRIPT": Session.putscript,
    "CHECKSCRIPT": Session.checkscript,
    "LISTSCRIPTS": Session.listscripts,
    "SETACTIVE": Session.setactive,
    "GETSCRIPT": Session.getscript,
    "DELETESCRIPT": Session.deletescript,
    "RENAMESCRIPT": Session.renamescript,
}

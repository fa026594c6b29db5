"""One IMAP connection: the state machine, command dispatch and error replies.

States follow RFC 3501: not authenticated, authenticated, selected, logout. A command
is looked up in the explicit table :data:`~cryptmail.imap.server.commands.COMMANDS`; its
handler writes untagged responses with :meth:`Session.send` and returns the tagged
completion line, or raises :class:`CommandFailed`. Store errors map to NO with RFC 5530
codes in one table here. A malformed command gets ``BAD`` with a fixed reason and the
connection reads on.

A logged-in session is watched (`keys.CredentialWatcher`): when the user's credential
generation moves (a password change, recovery, app-password revocation or re-key, in
any process), the session answers ``* BYE [UNAVAILABLE] Credentials changed`` and closes
at once if it was waiting for the client (also in IDLE), else right after the command
in progress; pipelined commands behind it are not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn

from cryptmail.errors import (
    BlobMissing,
    InputTooLarge,
    KdfBusy,
    KeyLocked,
    MailboxExists,
    MailboxNotFound,
    MessageNotFound,
    ObjectTampered,
    ParseError,
    QuotaExceeded,
    StoreError,
    StoreUnavailable,
    TooManyAttempts,
    UnknownCharset,
)
from cryptmail.imap.server._compress import DeflateStream, InflateLimit
from cryptmail.imap.server._errors import CommandFailed, ConnectionClosed
from cryptmail.imap.server._route import State
from cryptmail.imap.server._writes import SessionWrites
from cryptmail.imap.server.commands import COMMANDS, receive_append
from cryptmail.imap.wire._reader import (
    AppendStart,
    ClientLine,
    CommandReader,
    CommandReady,
    ContinueLiteral,
    ReaderEvent,
    ReaderLimits,
)
from cryptmail.imap.wire._requests import Command
from cryptmail.imap.wire._response import continuation, response_code, tagged
from cryptmail.keys import UnlockedAccount, Watch
from cryptmail.metrics import current as current_metrics
from cryptmail.tasks import cancel_and_wait
from cryptmail.tls import PlaintextAfterStartTls, TlsHandshakeFailed, upgrade_stream

if TYPE_CHECKING:
    from cryptmail.imap.server._listener import ServerContext
    from cryptmail.imap.server._selected import SelectedMailbox
    from cryptmail.imap.server.commands._notify_watch import NotifyWatch

log = logging.getLogger(__name__)

PREAUTH_LIMITS: Final = ReaderLimits(
    max_line=48 * 1024, max_literal=4 * 1024, max_command=64 * 1024, max_append=0
)
"""Tighter than after login, but a client's ID (RFC 2971 allows 30 values of 1 KiB,
about 31 KB on one line) must fit: Roundcube sends it before LOGIN."""
_READ_SIZE: Final = 64 * 1024
PREAUTH_TIMEOUT_S: float = 60.0
"""Idle time allowed before login (RFC 3501's 30 minutes apply once logged in), so
unauthenticated connections cannot hold the per-address slots for long."""
_TRACE_WORD: Final = re.compile(rb"[A-Za-z0-9.]{1,24}")
# Extensions of issue 16 (imapext), each added when complete; kept apart from the list
# above so parallel work on the CAPABILITY line merges cleanly.
ANY_STATE_EXTENSIONS: Final = (
    "LITERAL-",  # RFC 7888: implied by LITERAL+, named for clients
    "IMAP4rev2",  # RFC 9051: ENABLE IMAP4rev2 switches the session (_rev2.py)
)  # fmt: skip
AUTH_EXTENSIONS: Final = (
    "STATUS=SIZE", "SAVEDATE", "OBJECTID",  # RFC 8438, 8514, 8474
    "COMPRESS=DEFLATE",  # RFC 4978
    "BINARY",  # RFC 3516
    "MULTIAPPEND",  # RFC 3502
    "CATENATE",  # RFC 4469
    "UTF8=ACCEPT",  # RFC 6855
    "NOTIFY",  # RFC 5465 (_notify.py)
    "SEARCHRES",  # RFC 5182
    "CONTEXT=SEARCH", "CONTEXT=SORT",  # RFC 5267
    "PREVIEW",  # RFC 8970
    "URLAUTH",  # RFC 4467
)  # fmt: skip
CREDENTIALS_CHANGED: Final = b"* BYE [UNAVAILABLE] Credentials changed; log in again.\r\n"


def scrub(line: bytes) -> str:
    """A protocol trace line without credentials, names or content: tag and verb only."""
    words = line.split(b" ", 2)
    kept = [w.decode("ascii") if _TRACE_WORD.fullmatch(w) else "?" for w in words[:2]]
    return " ".join(kept) + (f" ...({len(line)} bytes)" if len(words) > 2 else "")


def _error_reply(exc: Exception) -> tuple[Literal["NO", "BAD"], str | None, str]:
    """One table: our errors to IMAP status, RFC 5530 code and a fixed text."""
    if isinstance(exc, CommandFailed):
        return exc.status, exc.code, exc.text
    if isinstance(exc, UnknownCharset):
        return "NO", "[BADCHARSET (UTF-8 US-ASCII)]", "Unsupported charset."
    if isinstance(exc, ParseError):
        return "BAD", None, exc.reason
    if isinstance(exc, MailboxNotFound):
        return "NO", "[NONEXISTENT]", "Mailbox does not exist."
    if isinstance(exc, MailboxExists):
        return "NO", "[ALREADYEXISTS]", "Mailbox already exists."
    if isinstance(exc, QuotaExceeded):
        return "NO", "[OVERQUOTA]", "Quota exceeded."
    if isinstance(exc, (ObjectTampered, BlobMissing)):
        return "NO", "[CORRUPTION]", "A stored message could not be read; the operator was told."
    if isinstance(exc, StoreUnavailable):
        return "NO", "[UNAVAILABLE]", "Storage is temporarily unavailable; try again."
    if isinstance(exc, MessageNotFound):
        return "NO", "[EXPUNGEISSUED]", "Some messages were expunged."
    if isinstance(exc, (TooManyAttempts, KdfBusy)):
        return "NO", "[UNAVAILABLE]", "Too many login attempts; try again in a moment."
    if isinstance(exc, KeyLocked):
        return "NO", "[UNAVAILABLE]", "The mailbox key is locked."
    if isinstance(exc, StoreError):
        return "NO", "[CANNOT]", "Operation not permitted on this mailbox."
    return "NO", "[SERVERBUG]", "Internal error; the operator was told."


def unread_plaintext(reader: asyncio.StreamReader, commands: CommandReader) -> int:
    """Bytes received and not consumed yet: in the command parser and in the
    StreamReader's read-ahead (asyncio has no public accessor for the latter)."""
    stream_buffer: bytearray = getattr(reader, "_buffer", bytearray())
    return commands.buffered + len(stream_buffer)


class Session:
    """The state of one connection; see the module docstring."""

    def __init__(
        self,
        context: ServerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_ip: str,
        tls_active: bool,
    ) -> None:
        self.context = context
        self.config = context.config
        self._reader = reader
        self._writer = writer
        self.peer_ip = peer_ip
        # The client behind a trusted webmail host, from its ID x-originating-ip.
        self.origin_ip: str | None = None
        self.tls_active = tls_active
        self.commands = CommandReader(PREAUTH_LIMITS)
        self.state: State = "nonauth"
        self.account: UnlockedAccount | None = None
        self.selected: SelectedMailbox | None = None
        self.enabled: set[str] = set()
        self.logged_out = False
        self.credentials_changed = False
        self._generation = 0
        self._watch: Watch | None = None
        # The deadline of the read in progress: moved to now to wake it.
        self._read_deadline: asyncio.Timeout | None = None
        # Both directions after COMPRESS DEFLATE (RFC 4978); None before.
        self.compression: DeflateStream | None = None
        # NOTIFY SET in force (RFC 5465): notifications go out while the session waits
        # for the client between commands (`_between_commands`) and in IDLE.
        self.notify: NotifyWatch | None = None
        self.writes = SessionWrites()
        """Writes deferred past an answer (`_writes`): started once it is sent."""
        self._between_commands = False

    # -- facts ---------------------------------------------------------------------------

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.peer_ip).is_loopback
        except ValueError:
            return False

    @property
    def plaintext_login_allowed(self) -> bool:
        if self.tls_active:
            return True
        return self.loopback and self.config.imap.allow_plaintext_login_on_loopback

    @property
    def user_account(self) -> UnlockedAccount:
        if self.account is None:
            raise CommandFailed("Not logged in.", status="BAD")
        return self.account

    @property
    def mailbox(self) -> SelectedMailbox:
        if self.selected is None:
            raise CommandFailed("No mailbox selected.", status="BAD")
        return self.selected

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"]
        caps += ANY_STATE_EXTENSIONS
        if self.state == "nonauth":
            if not self.tls_active and self.context.ssl_context is not None:
                caps.append("STARTTLS")
            if self.plaintext_login_allowed:
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        else:
            caps += [
                "UIDPLUS", "MOVE", "NAMESPACE", "UNSELECT", "SPECIAL-USE", "CHILDREN",
                "LIST-EXTENDED", "LIST-STATUS",
                f"APPENDLIMIT={self.config.imap.append_limit}", "CONDSTORE", "QRESYNC",
                "QUOTA", "QUOTA=RES-STORAGE",
            ]  # fmt: skip
            caps += AUTH_EXTENSIONS
            if self.config.quota.messages > 0:
                caps.append("QUOTA=RES-MESSAGE")
            caps += ["SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"]
            caps += ["ESEARCH", "ESORT", "WITHIN"]
        return " ".join(caps)

    # -- I/O -----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("S: %s", scrub(data.split(b"\r\n", 1)[0]))
        self._write(data)
        if self._writer.transport.get_write_buffer_size() > _READ_SIZE:
            await self.drain()

    def _write(self, data: bytes) -> None:
        if self.compression is not None:
            data = self.compression.compress(data)
            if not data:
                return
        self._writer.write(data)

    def _push(self) -> None:
        """Write out what the compressor holds, so the client can decode it all."""
        if self.compression is not None:
            tail = self.compression.flush()
            if tail:
                self._writer.write(tail)

    def _last_words(self, data: bytes) -> None:
        """A BYE written on the way out: compressed if the stream is, then pushed."""
        with contextlib.suppress(Exception):
            self._write(data)
            self._push()

    async def drain(self) -> None:
        self._push()
        try:
            async with asyncio.timeout(self.config.imap.idle_timeout_s):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise ConnectionClosed("the client stopped reading") from exc

    async def _read(self) -> bytes:
        await self.drain()
        if self.credentials_changed:  # told while the drain waited, before a deadline to move
            self._end_for_credentials()
        limit = float(self.config.imap.idle_timeout_s)
        if self.state == "nonauth":
            limit = min(limit, PREAUTH_TIMEOUT_S)
        try:
            async with asyncio.timeout(limit) as deadline:
                self._read_deadline = deadline
                if self.notify is not None and self._between_commands:
                    return await self._read_notifying()
                return await self._reader.read(_READ_SIZE)
        except TimeoutError:
            if self.credentials_changed:
                self._end_for_credentials()
            self._last_words(b"* BYE Idle for too long.\r\n")
            raise ConnectionClosed("idle timeout") from None
        except OSError as exc:
            raise ConnectionClosed("read failed") from exc
        finally:
            self._read_deadline = None

    async def _read_notifying(self) -> bytes:
        """Read, and meanwhile send the notifications NOTIFY asked for as they come.
        Cancelling the read loses nothing: StreamReader takes bytes only once it returns."""
        read = asyncio.ensure_future(self._reader.read(_READ_SIZE))
        wake: asyncio.Future[Any] | None = None
        try:
            while self.notify is not None:
                waiter: asyncio.Future[Any] = asyncio.ensure_future(self.notify.sink.ready.wait())
                wake = waiter
                done, _ = await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    return read.result()
                try:
                    await self.notify.deliver(self)
                except StoreError as exc:  # the database is away: the next change retries
                    log.warning("IMAP: NOTIFY update failed: %s", type(exc).__name__)
                await self.drain()
            return await read
        finally:
            # Never `suppress(CancelledError)` around the wait: a stop meanwhile would be lost.
            await cancel_and_wait(*(t for t in (read, wake) if t is not None and not t.done()))

    async def next_event(self) -> ReaderEvent:
        """The next reader event; raises ParseError, InputTooLarge, ConnectionClosed."""
        while True:
            if self.credentials_changed:
                self._end_for_credentials()
            event = self.commands.next_event()
            if event is not None:
                return event
            data = await self._read() if self.compression is None else await self._inflated()
            if not data:
                raise ConnectionClosed("the client closed the connection")
            self.commands.feed(data)

    async def _inflated(self) -> bytes:
        """The next step of inflated input (empty at the end of the connection)."""
        stream = self.compression
        assert stream is not None  # noqa: S101 - only called with compression on
        try:
            while True:
                if stream.pending:
                    out = stream.more()
                else:
                    raw = await self._read()
                    if not raw:
                        return b""
                    out = stream.inflate(raw)
                if out:
                    return out
        except InflateLimit as exc:
            log.info("IMAP: compressed input refused: %s", exc.reason)
            self._last_words(b"* BYE " + exc.reason.encode() + b".\r\n")
            raise ConnectionClosed("bad compressed input") from None

    async def read_client_line(self) -> bytes:
        """One raw line (SASL response, IDLE's DONE); BAD for the command if too long."""
        self.commands.request_line()
        while True:
            try:
                event = await self.next_event()
            except InputTooLarge as exc:
                if exc.recoverable:
                    raise CommandFailed("Line is too long.", status="BAD") from None
                await self.send(b"* BYE " + exc.reason.encode() + b"\r\n")
                raise ConnectionClosed("input over the limit") from None
            if isinstance(event, ClientLine):
                return event.line

    async def start_tls(self, tag: str) -> None:
        """Answer STARTTLS and run the handshake, or refuse if the client pipelined.

        Bytes received after STARTTLS came in plaintext: letting them into the TLS
        session would run an attacker's commands as if they were protected
        (CVE-2011-0411). Like Dovecot and Postfix, the server hangs up instead.
        """
        context = self.context.ssl_context
        assert context is not None  # noqa: S101 - STARTTLS is refused without one

        async def say(data: bytes) -> None:
            await self.send(data)
            await self.drain()

        try:
            await upgrade_stream(
                self._writer,
                context,
                plaintext_left=lambda: unread_plaintext(self._reader, self.commands),
                say=say,
                go_ahead=tagged(tag, "OK", "Begin TLS negotiation now."),
                refusal=b"* BYE STARTTLS must be the last command before the handshake.\r\n",
            )
        except (PlaintextAfterStartTls, TlsHandshakeFailed) as exc:
            raise ConnectionClosed(str(exc)) from exc
        self.tls_active = True
        self.commands = CommandReader(PREAUTH_LIMITS)

    async def start_compress(self, tag: str) -> None:
        """Answer COMPRESS DEFLATE, then compress both ways (RFC 4978).

        The client may send nothing after COMPRESS until it has the answer: bytes that
        came anyway cannot be told plain from compressed, so the server hangs up.
        """
        if unread_plaintext(self._reader, self.commands):
            await self.send(b"* BYE COMPRESS must be the last command before compression.\r\n")
            await self.drain()
            raise ConnectionClosed("bytes pipelined after COMPRESS")
        await self.send(tagged(tag, "OK", "DEFLATE active."))
        await self.drain()
        self.compression = DeflateStream(_READ_SIZE)

    def authenticated(self, account: UnlockedAccount, generation: int) -> None:
        """Logged in as `account`, checked at credential `generation`: the session
        ends when that generation moves."""
        self.account = account
        self._generation = generation
        self._watch = self.context.watcher.watch(
            account.user.id, generation, self._on_credentials_changed
        )
        self.state = "auth"
        self.commands.limits = ReaderLimits(max_append=self.config.imap.append_limit)
        if self.context.fulltext is not None:
            self.context.fulltext.attach(account)

    def _on_credentials_changed(self) -> None:
        # Called by the watcher's task: wake a read in progress (here or in IDLE's line
        # task); a command in progress finishes and the next event ends the session.
        self.credentials_changed = True
        if self._read_deadline is not None:
            # Already expiring (the idle timeout fired): its handler sees the flag too.
            with contextlib.suppress(RuntimeError):
                self._read_deadline.reschedule(asyncio.get_running_loop().time())

    def _end_for_credentials(self) -> NoReturn:
        if self.account is not None:
            log.info("IMAP session of user id %d ended: credentials changed", self.account.user.id)
        self._last_words(CREDENTIALS_CHANGED)
        raise ConnectionClosed("credentials changed")

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        current_metrics().imap_connection()
        try:
            await self.send(
                b"* OK [CAPABILITY " + self.capabilities().encode() + b"] cryptmail IMAP ready.\r\n"
            )
            while not self.logged_out:
                try:
                    self._between_commands = True
                    try:
                        event = await self.next_event()
                    finally:
                        self._between_commands = False
                    await self._on_event(event)
                except ParseError as exc:
                    await self._bad(exc)
                except InputTooLarge as exc:
                    if not exc.recoverable:
                        await self.send(b"* BYE " + exc.reason.encode() + b"\r\n")
                        break
                    await self._refuse_large(exc)
            await self.drain()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            self._last_words(b"* BYE Server shutting down.\r\n")
            raise
        finally:
            await self.close()

    async def close(self) -> None:
        try:
            await self.writes.finish()
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.notify is not None:
            self.notify.stop()
            self.notify = None
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self._watch is not None:
            self.context.watcher.unwatch(self._watch)
            self._watch = None
        if self.account is not None:
            if self.context.fulltext is not None:
                self.context.fulltext.detach(self.account)
            ended = self._generation if self.credentials_changed else None
            self.context.accounts.release(self.account, ended_generation=ended)
            self.account = None  # the unlocked key goes with the last reference
        with contextlib.suppress(Exception):
            self._push()
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._writer.wait_closed()

    async def _bad(self, exc: ParseError) -> None:
        status: Literal["NO", "BAD"] = "NO" if isinstance(exc, UnknownCharset) else "BAD"
        code = "[BADCHARSET (UTF-8 US-ASCII)]" if isinstance(exc, UnknownCharset) else None
        if exc.tag:
            await self.send(tagged(exc.tag, status, exc.reason, code))
        else:
            await self.send(b"* BAD " + exc.reason.encode() + b"\r\n")

    async def _refuse_large(self, exc: InputTooLarge) -> None:
        reason = exc.reason
        code = None
        if reason.startswith("[TOOBIG] "):
            code, reason = "[TOOBIG]", reason[len("[TOOBIG] ") :]
        if exc.tag:
            status: Literal["NO", "BAD"] = "NO" if self.state != "nonauth" else "BAD"
            await self.send(tagged(exc.tag, status, reason, code))
        else:
            await self.send(b"* BAD " + reason.encode() + b"\r\n")

    async def _on_event(self, event: ReaderEvent) -> None:
        if isinstance(event, ContinueLiteral):
            await self.send(continuation())
        elif isinstance(event, AppendStart):
            started = time.monotonic()
            await self._guarded(event.tag, receive_append(self, event))
            current_metrics().imap_command("APPEND", time.monotonic() - started)
        elif isinstance(event, CommandReady):
            await self.dispatch(event.command)

    async def dispatch(self, command: Command) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("C: %s %s", command.tag if _TRACE_WORD.fullmatch(command.tag.encode())
                      else "?", command.name)  # fmt: skip
        found = COMMANDS.get(type(command))
        if found is None:
            await self.send(tagged(command.tag, "BAD", "Command not implemented."))
            return
        if self.state not in found.states:
            text = {
                "nonauth": "Log in first.",
                "auth": "No mailbox selected.",
                "selected": "Already logged in.",
            }[self.state]
            await self.send(tagged(command.tag, "BAD", text))
            return
        # RFC 3501 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH (UID forms may);
        # SORT and THREAD answer with numbers as SEARCH does.
        allow_expunge = command.name not in ("FETCH", "STORE", "SEARCH", "SORT", "THREAD") or bool(
            getattr(command, "uid", False)
        )
        started = time.monotonic()
        await self._guarded(
            command.tag,
            found.handler(self, command),
            refresh=found.refresh,
            allow_expunge=allow_expunge,
        )
        # The name comes from the parsed command type, a bounded set; the metric also
        # folds anything it does not know into "other".
        current_metrics().imap_command(command.name, time.monotonic() - started)

    async def _guarded(
        self, tag: str, work: Awaitable[bytes], *, refresh: bool = True, allow_expunge: bool = True
    ) -> None:
        try:
            reply = await work
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception as exc:  # every failure gets an answer
            if not isinstance(exc, (CommandFailed, StoreError, ParseError)):
                log.exception("IMAP command failed unexpectedly")
            elif isinstance(exc, (ObjectTampered, BlobMissing)):
                log.error("IMAP: %s", exc)
            status, code, text = _error_reply(exc)
            reply = tagged(tag, status, text, code)
        if refresh and self.selected is not None:
            try:
                await self.selected.send_updates(self, allow_expunge=allow_expunge)
            except StoreError as exc:
                log.warning("IMAP: mailbox refresh failed: %s", type(exc).__name__)
        await self.send(reply)
        self.writes.start()

    def code(self, name: str, *args: Any) -> str:
        return response_code(name, *args)

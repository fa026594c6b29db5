"""The LMTP engine (RFC 2033): parsing, state and limits; no policy.

What happens to a recipient or a message is the handler's business (`_handler.py`):
the engine asks it about each RCPT, hands it a sink for the DATA bytes, and after the
final dot sends the one reply per accepted recipient that the handler returns.

Every input is bounded: command lines (`max_command_line`), the message size, the
number of recipients, and every read has the idle deadline. DATA is streamed: bytes
are dot-unstuffed and passed on in pieces, never held whole in memory. Only CRLF.CRLF
ends DATA (a bare LF before or after the dot does not: SMTP smuggling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptmail.delivery._input import LineTooLong, LmtpInput
from cryptmail.metrics import current as current_metrics

log = logging.getLogger(__name__)

_FLUSH = 64 * 1024
READ_LIMIT = 64 * 1024
_PATH = re.compile(r"^\s*<([^<>\s]*)>\s*(.*)$")
_BODY_TYPES = ("7BIT", "8BITMIME")


@dataclass(frozen=True)
class Limits:
    """The bounds one LMTP connection lives within."""

    max_message_bytes: int = 104_857_600
    max_recipients: int = 1000
    max_command_line: int = 512
    idle_timeout_s: float = 300.0
    max_commands: int = 10_000
    """Commands per connection before it is closed (a runaway client)."""


@dataclass
class Session:
    """One connection."""

    session_id: str
    peer: str
    lhlo: str = ""
    transactions: int = 0


@dataclass
class Envelope:
    """One mail transaction; RSET or the end of DATA clears it."""

    sender: str | None = None
    declared_size: int = 0
    recipients: list[tuple[str, object]] = field(default_factory=list)
    """(address, the handler's token for it), one per accepted RCPT."""


class DataSink(Protocol):
    """Where the DATA bytes go (the store's Spool satisfies it)."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    def discard(self) -> None: ...


class Handler(Protocol):
    """The policy behind the engine."""

    async def handle_rcpt(
        self, session: Session, envelope: Envelope, address: str
    ) -> tuple[str, object | None]:
        """Reply line, and a token when the recipient is accepted (reply 2xx)."""
        ...

    async def open_sink(self, session: Session, envelope: Envelope) -> DataSink: ...

    async def handle_data(
        self, session: Session, envelope: Envelope, sink: DataSink, size: int
    ) -> Sequence[str]:
        """One reply per accepted recipient, in RCPT order. Must not raise."""
        ...


class LmtpConnection:
    """Runs one LMTP dialogue to its end."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Handler,
        *,
        hostname: str,
        limits: Limits,
    ) -> None:
        self._input = LmtpInput(reader, limits.idle_timeout_s, before_wait=self._flush)
        self._writer = writer
        self._held: list[bytes] = []
        self._handler = handler
        self._hostname = hostname
        self._limits = limits
        peer = writer.get_extra_info("peername")
        self.session = Session(os.urandom(5).hex().upper(), str(peer or "local"))
        self._envelope = Envelope()
        self.busy = False
        """True from DATA until its replies are sent: a graceful stop waits for it."""
        self.closing = False

    # -- I/O -----------------------------------------------------------------

    async def _reply(self, *lines: str) -> None:
        """Hold reply lines back until the connection next waits for input (`_flush`):
        the replies to a pipelined MAIL, RCPT and DATA (RFC 2920, as Postfix sends
        them) then go out in one send, not three. A send on loopback costs about 70 us
        of CPU, a tenth of a small message's delivery here."""
        self._held.append("".join(line + "\r\n" for line in lines).encode("ascii"))

    async def _flush(self) -> None:
        if self._held:
            self._hand_over()
            await self._writer.drain()

    def _hand_over(self) -> None:
        """The held replies to the transport (which sends them, also when closed next)."""
        held, self._held = b"".join(self._held), []
        self._writer.write(held)

    # -- dialogue ------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._reply(f"220 {self._hostname} LMTP cryptmail ready")
            for _ in range(self._limits.max_commands):
                if self.closing:
                    await self._reply("421 4.3.2 Service shutting down, try again later")
                    return
                try:
                    raw = await self._input.readline(self._limits.max_command_line)
                except LineTooLong:
                    await self._reply("500 5.5.2 Line too long")
                    continue
                if not await self._command(raw):
                    return
            await self._reply("421 4.7.0 Too many commands, closing")
        except TimeoutError:
            await self._try_reply("421 4.4.2 Idle timeout, closing")
        except (EOFError, ConnectionError):
            pass
        except asyncio.CancelledError:
            await self._try_reply("421 4.3.2 Service shutting down, try again later")
            raise
        finally:
            if self._held:
                with contextlib.suppress(OSError, RuntimeError):
                    self._hand_over()
            self._writer.close()

    async def _try_reply(self, line: str) -> None:
        try:
            await self._reply(line)
            self._hand_over()
            async with asyncio.timeout(1):
                await self._writer.drain()
        except (OSError, TimeoutError, RuntimeError):
            pass

    async def _command(self, raw: bytes) -> bool:
        """Handle one command line; False ends the connection."""
        try:
            # UTF-8 addresses are allowed (SMTPUTF8, RFC 6531).
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            await self._reply("500 5.5.2 Command must be UTF-8")
            return True
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "LHLO":
            return await self._lhlo(arg.strip())
        if verb == "MAIL":
            await self._mail(arg)
        elif verb == "RCPT":
            await self._rcpt(arg)
        elif verb == "DATA":
            await self._data(arg)
        elif verb == "RSET":
            self._envelope = Envelope()
            await self._reply("250 2.0.0 OK")
        elif verb == "NOOP":
            await self._reply("250 2.0.0 OK")
        elif verb == "VRFY":
            await self._reply("252 2.5.0 Cannot VRFY user, but will accept message")
        elif verb == "QUIT":
            await self._reply("221 2.0.0 Bye")
            return False
        elif verb in ("HELO", "EHLO"):
            await self._reply("500 5.5.1 This is LMTP: say LHLO")
        elif verb in ("EXPN", "HELP", "BDAT", "ETRN", "STARTTLS", "AUTH"):
            await self._reply("502 5.5.1 Command not implemented")
        else:
            await self._reply("500 5.5.2 Command unrecognized")
        return True

    async def _lhlo(self, domain: str) -> bool:
        if not domain:
            await self._reply("501 5.5.4 LHLO needs a domain")
            return True
        self.session.lhlo = domain
        self._envelope = Envelope()
        await self._reply(
            f"250-{self._hostname}",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250-SMTPUTF8",
            f"250 SIZE {self._limits.max_message_bytes}",
        )
        return True

    async def _mail(self, arg: str) -> None:
        if not self.session.lhlo:
            await self._reply("503 5.5.1 Say LHLO first")
            return
        if self._envelope.sender is not None:
            await self._reply("503 5.5.1 Nested MAIL command")
            return
        if not arg.upper().startswith("FROM:"):
            await self._reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        match = _PATH.match(arg[5:])
        if match is None:
            await self._reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        size = 0
        for param in match.group(2).split():
            name, _, value = param.partition("=")
            name = name.upper()
            if name == "SIZE" and value.isdigit() and len(value) <= 15:
                size = int(value)
            elif (name == "BODY" and value.upper() in _BODY_TYPES) or (
                name == "SMTPUTF8" and not value
            ):
                pass
            else:
                await self._reply("555 5.5.4 Unsupported MAIL parameter")
                return
        if size > self._limits.max_message_bytes:
            await self._reply("552 5.3.4 Message too big for this server")
            return
        self._envelope = Envelope(sender=match.group(1), declared_size=size)
        await self._reply("250 2.1.0 OK")

    async def _rcpt(self, arg: str) -> None:
        if self._envelope.sender is None:
            await self._reply("503 5.5.1 Need MAIL first")
            return
        if not arg.upper().startswith("TO:"):
            await self._reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        match = _PATH.match(arg[3:])
        if match is None or "@" not in match.group(1) or match.group(2).strip():
            await self._reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        if len(self._envelope.recipients) >= self._limits.max_recipients:
            await self._reply("452 4.5.3 Too many recipients")
            return
        address = match.group(1)
        reply, token = await self._handler.handle_rcpt(self.session, self._envelope, address)
        if reply.startswith("2") and token is not None:
            self._envelope.recipients.append((address, token))
        await self._reply(reply)

    async def _data(self, arg: str) -> None:
        if arg.strip():
            await self._reply("501 5.5.4 DATA takes no arguments")
            return
        if self._envelope.sender is None:
            await self._reply("503 5.5.1 Need MAIL first")
            return
        if not self._envelope.recipients:
            await self._reply("503 5.5.1 No valid recipients")
            return
        envelope, self._envelope = self._envelope, Envelope()
        self.session.transactions += 1
        self.busy = True
        try:
            await self._receive(envelope)
            await self._flush()  # busy until the replies are sent (a stop waits for them)
        finally:
            self.busy = False

    async def _receive(self, envelope: Envelope) -> None:
        count = len(envelope.recipients)
        try:
            sink: DataSink | None = await self._handler.open_sink(self.session, envelope)
        except Exception as exc:  # any failure is transient for the sender
            log.warning("session %s: no spool (%s)", self.session.session_id, type(exc).__name__)
            sink = None
        await self._reply("354 Start mail input; end with <CRLF>.<CRLF>")
        size = 0
        too_big = False
        failed = sink is None
        # Pieces are joined once per flush: appending to a bytearray and then copying it
        # out would be two more passes over the message.
        pending: list[bytes] = []
        pending_size = 0
        try:
            async for piece in self._input.data():
                size += len(piece)
                if size > self._limits.max_message_bytes:
                    too_big = True
                if too_big or failed:
                    continue  # read on to the final dot, so the dialogue stays in step
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= _FLUSH:
                    failed = not await self._write(sink, b"".join(pending))
                    pending.clear()
                    pending_size = 0
            if pending and not (too_big or failed):
                failed = not await self._write(sink, b"".join(pending))
            if not (too_big or failed) and sink is not None:
                try:
                    await sink.close()
                except Exception as exc:  # transient for the sender
                    log.warning(
                        "session %s: spool close failed (%s)",
                        self.session.session_id,
                        type(exc).__name__,
                    )
                    failed = True
        except BaseException:
            if sink is not None:
                sink.discard()
            raise
        if too_big or failed or sink is None:
            if sink is not None:
                sink.discard()
            reply = (
                "552 5.3.4 Message too big for this server"
                if too_big
                else "451 4.3.0 Temporary failure, try again later"
            )
            _count([reply] * count, 0.0)
            await self._reply(*([reply] * count))
            return
        started = time.monotonic()
        try:
            replies = list(await self._handler.handle_data(self.session, envelope, sink, size))
        finally:
            sink.discard()
        if len(replies) != count:
            replies = ["451 4.3.0 Temporary failure, try again later"] * count
        _count(replies, time.monotonic() - started)
        await self._reply(*replies)

    async def _write(self, sink: DataSink | None, data: bytes) -> bool:
        if sink is None:
            return False
        try:
            await sink.write(data)
        except Exception as exc:  # transient for the sender
            log.warning(
                "session %s: spool write failed (%s)", self.session.session_id, type(exc).__name__
            )
            return False
        return True


def _count(replies: list[str], seconds: float) -> None:
    """Each recipient's reply in the delivery metrics, by its class (2xx, 4xx, 5xx)."""
    metrics = current_metrics()
    for reply in replies:
        result = {"2": "delivered", "4": "deferred"}.get(reply[:1], "rejected")
        metrics.delivered(result, seconds)

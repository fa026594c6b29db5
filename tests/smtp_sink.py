"""Recording mail servers, each on an event loop in a thread: an SMTP sink for Sieve's
relay (redirects, vacation replies) and an LMTP sink that Postfix delivers to.

Both speak the same small dialogue (hello, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and
differ in the hello and in how DATA is answered: SMTP once per message, LMTP once per
recipient (RFC 2033). A message is recorded once the sink answers 250 to its DATA, as
a relay or a delivery agent takes responsibility then.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from loop_thread import stop_loop_thread

LOOPBACK = "127.0.0.1"


def _address(line: bytes) -> str:
    start, end = line.find(b"<"), line.rfind(b">")
    return line[start + 1 : end].decode() if start != -1 and end > start else ""


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b"..") else line)
    return b"".join(lines)


class _Sink:
    """The loop thread, the listening socket and the dialogue; subclasses say hello and
    answer DATA. `port` 0 picks a free one (read it after `start`)."""

    HELLO: tuple[bytes, ...] = ()
    HELLO_REPLY = b""
    GREETING = b""

    port: int

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

        async def listen() -> asyncio.Server:
            self.listening()
            return await asyncio.start_server(self._session, LOOPBACK, self.port)

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]

    def listening(self) -> None:
        """Called on the sink's loop before it listens."""

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        stop_loop_thread(self._loop, self._thread)

    async def answer_data(
        self, writer: asyncio.StreamWriter, sender: str, recipients: list[str], data: bytes
    ) -> bool:
        """Answer (and record) a message's DATA; False ends the session unanswered."""
        raise NotImplementedError

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, recipients = "", list[str]()
        writer.write(self.GREETING)
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in self.HELLO:
                    writer.write(self.HELLO_REPLY)
                elif verb == b"MAIL":
                    sender, recipients = _address(line), []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    recipients.append(_address(line))
                    writer.write(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA" and recipients:
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    data = await _read_data(reader)
                    if not await self.answer_data(writer, sender, recipients, data):
                        return
                elif verb == b"RSET":
                    sender, recipients = "", []
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif verb == b"NOOP":
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    writer.write(b"500 5.5.1 Unknown command\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class Relayed:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass
class SmtpSink(_Sink):
    """The SMTP relay. `hold` names recipients whose DATA is read but not answered until
    `drop_held` (the sender dies first in a crash test): such a message is never
    recorded."""

    HELLO = (b"EHLO", b"HELO")
    HELLO_REPLY = b"250-sink\r\n250 8BITMIME\r\n"
    GREETING = b"220 sink ESMTP\r\n"

    hold: frozenset[str] = frozenset()
    port: int = 0
    messages: list[Relayed] = field(default_factory=list)
    held: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._release: asyncio.Event | None = None

    @property
    def relay(self) -> str:
        """The `sieve.smtp_relay` value that reaches this sink."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> SmtpSink:  # type: ignore[override]
        super().start()
        return self

    def listening(self) -> None:
        self._release = asyncio.Event()

    def stop(self) -> None:
        self.drop_held()
        super().stop()

    def drop_held(self) -> None:
        """End the held sessions without an answer and stop holding from now on."""
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def received(self) -> list[Relayed]:
        with self._changed:
            return list(self.messages)

    def wait(self, check: object, timeout: float = 30.0) -> None:
        """Until `check(sink)` is true; TimeoutError with what arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: check(self), timeout):  # type: ignore[operator]
                raise TimeoutError(f"the SMTP sink has {len(self.messages)}, held {self.held}")

    async def answer_data(
        self, writer: asyncio.StreamWriter, sender: str, recipients: list[str], data: bytes
    ) -> bool:
        assert self._release is not None
        if self.hold & set(recipients) and not self._release.is_set():
            with self._changed:
                self.held += 1
                self._changed.notify_all()
            await self._release.wait()
            return False  # never answered: the message is not ours
        with self._changed:
            self.messages.append(Relayed(sender, tuple(recipients), data))
            self._changed.notify_all()
        writer.write(b"250 2.0.0 Ok queued\r\n")
        return True


@dataclass
class Delivery:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class LmtpSink(_Sink):
    """The LMTP server. After DATA it answers once per recipient, taking each reply from
    `data_replies` while that list has any (e.g. a 451 to make Postfix retry) and 250
    after that. Only recipients answered 250 are recorded."""

    HELLO = (b"LHLO",)
    HELLO_REPLY = b"250-sink\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
    GREETING = b"220 sink LMTP ready\r\n"

    port: int = 0
    data_replies: list[bytes] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise TimeoutError(f"LMTP sink got {len(self.deliveries)} of {count} messages")
            return list(self.deliveries)

    async def answer_data(
        self, writer: asyncio.StreamWriter, sender: str, recipients: list[str], data: bytes
    ) -> bool:
        with self._changed:
            self.attempts += 1
            for recipient in recipients:
                reply = self.data_replies.pop(0) if self.data_replies else b"250 2.0.0 Ok"
                writer.write(reply + b"\r\n")
                if reply.startswith(b"250"):
                    self.deliveries.append(Delivery(sender, [recipient], data))
            self._changed.notify_all()
        return True

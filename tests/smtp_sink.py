"""A recording SMTP server for Sieve's relay (redirects, vacation replies), in a thread.

It stands where Postfix's SMTP would, so a test can count exactly what the relay got:
each message is recorded once the sink answers 250 to its DATA, as a relay takes
responsibility then. `hold` names recipients whose DATA is read but not answered until
`drop_held` (the sender dies first in a crash test): such a message is never recorded.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from loop_thread import stop_loop_thread

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Relayed:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


def _address(line: bytes) -> str:
    start, end = line.find(b"<"), line.rfind(b">")
    return line[start + 1 : end].decode() if start != -1 and end > start else ""


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b"..") else line)
    return b"".join(lines)


@dataclass
class SmtpSink:
    hold: frozenset[str] = frozenset()
    port: int = 0
    messages: list[Relayed] = field(default_factory=list)
    held: int = 0

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release: asyncio.Event | None = None

    @property
    def relay(self) -> str:
        """The `sieve.smtp_relay` value that reaches this sink."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> SmtpSink:
        self._thread.start()

        async def listen() -> asyncio.Server:
            self._release = asyncio.Event()
            return await asyncio.start_server(self._session, LOOPBACK, self.port)

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        self.drop_held()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        stop_loop_thread(self._loop, self._thread)

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

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, recipients = "", list[str]()
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    sender, recipients = _address(line), []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    recipients.append(_address(line))
                    writer.write(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA" and recipients:
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    data = await _read_data(reader)
                    assert self._release is not None
                    if self.hold & set(recipients) and not self._release.is_set():
                        with self._changed:
                            self.held += 1
                            self._changed.notify_all()
                        await self._release.wait()
                        return  # never answered: the message is not ours
                    with self._changed:
                        self.messages.append(Relayed(sender, tuple(recipients), data))
                        self._changed.notify_all()
                    writer.write(b"250 2.0.0 Ok queued\r\n")
                elif verb in (b"RSET", b"NOOP"):
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

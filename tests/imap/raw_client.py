"""A byte-exact IMAP client for the live-server tests (ours and Dovecot, in process or a
real `cryptmail serve`): lines and literals as sent, unsolicited responses seen exactly
as they come between commands."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

from .server_rig import PASSWORD, USER

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
# Held until the test ends (a strong reference: a dropped client would otherwise be
# closed by the garbage collector, with a ResourceWarning, in whatever test runs then).
_OPEN: set[RawClient] = set()


class RawClient:
    """Send a line, collect the responses up to the tagged one, literals kept whole."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rwb")
        _OPEN.add(self)
        self.greeting = self.file.readline()
        self.count = 0

    @classmethod
    def connect(cls, port: int, timeout: float = 20) -> RawClient:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout))

    @classmethod
    def logged_in(
        cls, port: int, user: str = USER, password: str = PASSWORD, timeout: float = 30
    ) -> RawClient:
        """Connected, greeted with OK, and logged in as `user`."""
        client = cls.connect(port, timeout)
        assert client.greeting.startswith(b"* OK"), client.greeting
        client.login(user, password)
        return client

    def send(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()

    def line(self) -> bytes:
        return self.file.readline()

    def response(self) -> bytes:
        """One whole response: a line, and each literal it announces with what follows."""
        out = self.file.readline()
        while (found := _LITERAL.search(out)) is not None:
            out += self.file.read(int(found.group(1)))
            out += self.file.readline()
        return out

    def read(self) -> bytes:
        """One whole response without its CRLF; the connection must still be open."""
        out = self.response()
        assert out, "connection closed"
        return out.removesuffix(b"\r\n")

    def unsolicited(
        self,
        last: Callable[[bytes], bool],
        *,
        limit: int = 20,
        normalize: Callable[[bytes], bytes | None] = lambda line: line,
    ) -> list[bytes]:
        """Responses (each through `normalize`, which drops those it maps to None) up to
        and including the first that `last` accepts, within `limit` read."""
        seen: list[bytes] = []
        for _ in range(limit):
            line = normalize(self.read())
            if line is None:
                continue
            seen.append(line)
            if last(line):
                return seen
        raise AssertionError(f"not among {seen}")

    def next_tag(self) -> bytes:
        self.count += 1
        return b"t%d" % self.count

    def ask(self, command: bytes) -> tuple[list[bytes], bytes]:
        tag = self.next_tag()
        self.send(tag + b" " + command + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            response = self.response()
            assert response, "connection closed"
            if response.startswith(tag + b" "):
                return untagged, response.rstrip(b"\r\n")
            untagged.append(response.removesuffix(b"\r\n"))

    def login(self, user: str = USER, password: str = PASSWORD) -> None:
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        _, done = self.ask(f'LOGIN {user} "{quoted}"'.encode())
        assert b" OK " in done, done

    def close(self) -> None:
        self.file.close()
        self.sock.close()
        _OPEN.discard(self)


def close_left_open() -> None:
    """Close the clients a test did not close itself (a failed assertion on the way, or
    a client it only dropped)."""
    while _OPEN:
        _OPEN.pop().close()

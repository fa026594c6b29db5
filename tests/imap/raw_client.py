"""A byte-exact IMAP client for the live-server tests: lines and literals as sent."""

from __future__ import annotations

import re
import socket

from .server_rig import PASSWORD, USER

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


class RawClient:
    """Send a line, collect the responses up to the tagged one, literals kept whole."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rwb")
        self.greeting = self.file.readline()
        self.count = 0

    @classmethod
    def connect(cls, port: int) -> RawClient:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=20))

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

    def login(self) -> None:
        quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
        _, done = self.ask(f'LOGIN {USER} "{quoted}"'.encode())
        assert b" OK " in done, done

    def close(self) -> None:
        self.file.close()
        self.sock.close()

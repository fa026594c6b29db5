"""The incremental command reader: bytes in, framed and parsed commands out.

Feed it what the socket gave (:meth:`CommandReader.feed`), then drain
:meth:`CommandReader.next_event` until it returns None. Events:

* :class:`CommandReady` - a complete, parsed command.
* :class:`ContinueLiteral` - the client announced a synchronizing literal
  (``{n}``) and waits: send ``+ Ready for literal data`` now.
* :class:`AppendStart`, then :class:`AppendData` chunks, then :class:`AppendEnd` -
  the message literal of an APPEND, handed over as it arrives and never buffered
  whole. ``AppendStart.needs_continuation`` says the client waits for ``+``; the
  server may instead refuse the message with :meth:`CommandReader.abort_command`
  (answer ``tag NO ...``). After the last message the :class:`CommandReady` with
  the :class:`~cryptmail.imap.wire._requests.Append` command closes the APPEND: commit
  then; a ParseError instead means roll back.
* :class:`ClientLine` - one raw line, after :meth:`CommandReader.request_line`
  (IDLE's ``DONE``, SASL responses of AUTHENTICATE).

Limits are checked before anything is buffered: an over-long command line raises
:class:`~cryptmail.errors.InputTooLarge` with ``recoverable=False`` (answer ``* BYE``
and close: it may end in a literal marker, so the stream cannot be resynchronised);
an over-large literal, or a command whose lines and literals together pass
``max_command``, raises it with ``recoverable=True`` and the reader skips that
command, so the server answers ``tag NO [TOOBIG]`` and reads on. An over-long raw
line (:class:`ClientLine`) carries no literal, so it is skipped to its end and raises
``recoverable=True`` too: the command waiting for it answers ``BAD``. A malformed
command raises :class:`~cryptmail.errors.ParseError` after the whole command was
read, so the next command starts clean.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from cryptmail.errors import InputTooLarge
from cryptmail.imap.wire._lexer import TAG_CHARS, Frame, StreamedLiteral
from cryptmail.imap.wire._parser import parse_append_prefix, parse_command
from cryptmail.imap.wire._requests import Command

__all__ = [
    "AppendData",
    "AppendEnd",
    "AppendStart",
    "ClientLine",
    "CommandReader",
    "CommandReady",
    "ContinueLiteral",
    "ReaderEvent",
    "ReaderLimits",
]

_COMPACT_AT: Final = 1 << 16
_MAX_MARKER: Final = 24  # "{" + 20 digits + "+}" and a spare


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """Input bounds; each is checked before the bytes it guards are buffered."""

    max_line: int = 64 * 1024
    """Longest single line (command text or a raw client line), as Dovecot's
    ``imap_max_line_length``; a whole command is bounded by ``max_command``."""
    max_literal: int = 1024 * 1024
    """Largest literal held in memory (any literal but an APPEND message)."""
    max_command: int = 4 * 1024 * 1024
    """Largest total of text lines and buffered literals in one command."""
    max_append: int = 50 * 1024 * 1024
    """Largest APPEND message (advertise it as APPENDLIMIT, RFC 7889)."""
    chunk_size: int = 64 * 1024
    """Largest AppendData chunk handed out at once."""


@dataclass(frozen=True, slots=True)
class CommandReady:
    command: Command


@dataclass(frozen=True, slots=True)
class ContinueLiteral:
    """Send a ``+`` continuation: the client waits before sending its literal."""

    tag: str | None


@dataclass(frozen=True, slots=True)
class AppendStart:
    """An APPEND message literal begins; ``index`` counts messages of a MULTIAPPEND."""

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    size: int
    needs_continuation: bool
    index: int


@dataclass(frozen=True, slots=True)
class AppendData:
    data: bytes


@dataclass(frozen=True, slots=True)
class AppendEnd:
    """The current APPEND message literal is complete (the command may go on)."""


@dataclass(frozen=True, slots=True)
class ClientLine:
    """A raw line requested with :meth:`CommandReader.request_line` (no CRLF)."""

    line: bytes


ReaderEvent = CommandReady | ContinueLiteral | AppendStart | AppendData | AppendEnd | ClientLine


class _State(enum.Enum):
    LINE = enum.auto()
    LITERAL = enum.auto()
    STREAM = enum.auto()
    DISCARD_LITERAL = enum.auto()
    DISCARD_LINE = enum.auto()
    SKIP_LINE = enum.auto()
    DEAD = enum.auto()


def _literal_marker(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronizing)`` if the line ends with ``{n}`` or ``{n+}``."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{", max(0, len(line) - _MAX_MARKER))
    if start < 0:
        return None
    body = line[start + 1 : -1]
    sync = not body.endswith(b"+")
    digits = body if sync else body[:-1]
    if not digits or not digits.isdigit() or len(digits) > 20:
        return None
    return int(digits), sync


def _tag_of(line: bytes) -> str | None:
    end = 0
    while end < len(line) and line[end] in TAG_CHARS:
        end += 1
    if end == 0 or (end < len(line) and line[end] != 0x20):
        return None
    return line[:end].decode("ascii")


class CommandReader:
    """Frames and parses the client's byte stream; see the module docstring."""

    def __init__(self, limits: ReaderLimits | None = None) -> None:
        self.limits = limits or ReaderLimits()
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._state = _State.LINE
        self._events: deque[ReaderEvent] = deque()
        self._frame = Frame()
        self._tag: str | None = None
        self._command_size = 0
        self._remaining = 0
        self._literal_size = 0
        self._literal_sync = False
        self._append_resume: int | None = None
        self._append_index = 0
        self._line_mode = False
        self._append_start = ("", "")
        self._dead: InputTooLarge | None = None
        self.utf8_names = False
        """Parse mailbox names as UTF-8 (after ENABLE UTF8=ACCEPT, RFC 6855)."""

    # -- input ----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        self._buf += data

    def request_line(self) -> None:
        """Return the next line as a :class:`ClientLine` instead of parsing it."""
        self._line_mode = True

    def abort_command(self) -> None:
        """Drop the command being read (after AppendStart, to refuse a message).

        A synchronizing literal not invited yet is simply forgotten; otherwise its
        bytes and the rest of the command (further MULTIAPPEND messages included) are
        read and thrown away.
        """
        self._events.clear()
        if (
            self._state is _State.STREAM
            and self._literal_sync
            and self._remaining == (self._literal_size)
        ):
            self._reset_command()
            self._state = _State.LINE
        elif self._state is _State.STREAM:
            self._state = _State.DISCARD_LITERAL
        elif self._state is _State.LITERAL:
            self._state = _State.DISCARD_LITERAL
        elif self._state is _State.LINE and self._frame.lines:
            # Between two literals of one command (after AppendEnd): skip its rest.
            self._reset_command()
            self._state = _State.DISCARD_LINE

    @property
    def buffered(self) -> int:
        """Bytes held and not yet consumed: what this reader costs in memory."""
        return len(self._buf) - self._pos

    # -- output ---------------------------------------------------------------------

    def next_event(self) -> ReaderEvent | None:
        """The next event, or None when more input is needed.

        Raises:
            ParseError: the command just read is malformed (the reader moved past it).
            InputTooLarge: a limit was hit; see ``recoverable``.
        """
        while True:
            if self._events:
                return self._events.popleft()
            if self._dead is not None:
                raise self._dead
            state = self._state
            if state is _State.LINE:
                line = self._take_line()
                if line is None:
                    return None
                if self._line_mode:
                    self._line_mode = False
                    return ClientLine(line)
                result = self._on_line(line)
                if result is not None:
                    return result
            elif state is _State.LITERAL:
                if self.buffered < self._remaining:
                    return None
                self._frame.literals.append(self._take(self._remaining))
                self._state = _State.LINE
            elif state is _State.STREAM:
                if self._remaining == 0:
                    self._frame.literals.append(StreamedLiteral(self._literal_size))
                    self._append_resume = len(self._frame.literals)
                    self._append_index += 1
                    self._state = _State.LINE
                    return AppendEnd()
                if self.buffered == 0:
                    return None
                size = min(self.buffered, self._remaining, self.limits.chunk_size)
                self._remaining -= size
                return AppendData(self._take(size))
            elif state is _State.DISCARD_LITERAL:
                size = min(self.buffered, self._remaining)
                self._skip(size)
                self._remaining -= size
                if self._remaining:
                    return None
                self._state = _State.DISCARD_LINE
            elif state is _State.DISCARD_LINE:
                line = self._take_line()
                if line is None:
                    return None
                marker = _literal_marker(line)
                if marker is None:
                    self._reset_command()
                    self._state = _State.LINE
                elif marker[1]:
                    # The client waits for a '+' that never comes; it has its answer.
                    self._reset_command()
                    self._state = _State.LINE
                else:
                    self._remaining = marker[0]
                    self._state = _State.DISCARD_LITERAL
            elif state is _State.SKIP_LINE:
                newline = self._buf.find(b"\n", self._pos)
                if newline < 0:
                    self._skip(self.buffered)
                    return None
                self._skip(newline + 1 - self._pos)
                self._state = _State.LINE
            else:
                assert self._dead is not None  # noqa: S101 -- DEAD always sets _dead
                raise self._dead

    # -- internals --------------------------------------------------------------------

    def _reset_command(self) -> None:
        self._frame = Frame()
        self._tag = None
        self._command_size = 0
        self._append_resume = None
        self._append_index = 0

    def _take(self, size: int) -> bytes:
        data = bytes(self._buf[self._pos : self._pos + size])
        self._skip(size)
        return data

    def _skip(self, size: int) -> None:
        self._pos += size
        if self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        self._scan = max(self._scan, self._pos)

    def _take_line(self) -> bytes | None:
        newline = self._buf.find(b"\n", self._scan)
        if newline < 0:
            self._scan = len(self._buf)
            if len(self._buf) - self._pos > self.limits.max_line:
                self._line_too_long(None)
            return None
        end = newline - 1 if newline > self._pos and self._buf[newline - 1] == 0x0D else newline
        if end - self._pos > self.limits.max_line:
            self._line_too_long(newline)
        line = bytes(self._buf[self._pos : end])
        self._skip(newline + 1 - self._pos)
        return line

    def _line_too_long(self, newline: int | None) -> None:
        if not self._line_mode:
            self._die("Command line is too long", self.limits.max_line)
        # A raw line (SASL response, IDLE's DONE) has no literal: skip it to its end.
        self._line_mode = False
        if newline is None:
            self._skip(self.buffered)
            self._state = _State.SKIP_LINE
        else:
            self._skip(newline + 1 - self._pos)
        raise InputTooLarge(
            "Line is too long", tag=None, limit=self.limits.max_line, recoverable=True
        )

    def _die(self, reason: str, limit: int) -> None:
        self._state = _State.DEAD
        self._dead = InputTooLarge(reason, tag=self._tag, limit=limit, recoverable=False)
        raise self._dead

    def _too_large(self, reason: str, limit: int, sync: bool, size: int) -> InputTooLarge:
        error = InputTooLarge(reason, tag=self._tag, limit=limit, recoverable=True)
        if sync:
            self._reset_command()
            self._state = _State.LINE
        else:
            self._remaining = size
            self._state = _State.DISCARD_LITERAL
        return error

    def _on_line(self, line: bytes) -> ReaderEvent | None:
        frame = self._frame
        if not frame.lines:
            if not line.strip():
                return None  # blank lines between commands are ignored
            self._tag = _tag_of(line)
        self._command_size += len(line) + 2
        frame.lines.append(line)
        marker = _literal_marker(line)
        if self._command_size > self.limits.max_command:
            size, sync = marker if marker is not None else (0, True)
            raise self._too_large(
                "[TOOBIG] Command is too large", self.limits.max_command, sync, size
            )
        if marker is None:
            self._reset_command()
            return CommandReady(parse_command(frame, utf8=self.utf8_names))
        size, sync = marker
        prefix = parse_append_prefix(
            frame,
            0 if self._append_resume is None else (self._append_resume),
            utf8=self.utf8_names,
        )
        if prefix is not None:
            tag, mailbox, flags, date, _size, _sync = prefix
            if size > self.limits.max_append:
                raise self._too_large(
                    "[TOOBIG] Message is larger than APPENDLIMIT",
                    self.limits.max_append, sync, size,
                )  # fmt: skip
            if self._append_resume is None:
                self._append_start = (tag, mailbox)
            tag, mailbox = self._append_start
            self._state = _State.STREAM
            self._remaining = self._literal_size = size
            self._literal_sync = sync
            return AppendStart(tag, mailbox, flags, date, size, sync, self._append_index)
        if size > self.limits.max_literal:
            raise self._too_large(
                "[TOOBIG] Literal is too large", self.limits.max_literal, sync, size
            )
        self._command_size += size
        if self._command_size > self.limits.max_command:
            raise self._too_large(
                "[TOOBIG] Command is too large", self.limits.max_command, sync, size
            )
        self._state = _State.LITERAL
        self._remaining = size
        return ContinueLiteral(self._tag) if sync else None

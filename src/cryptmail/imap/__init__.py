"""cryptmail.imap: the pure IMAP4rev1 protocol layer (no I/O, no asyncio, no SQL).

Reading commands (:class:`CommandReader`, :func:`parse_command`), writing responses,
modified UTF-7 names, sequence sets, MIME analysis (ENVELOPE, BODYSTRUCTURE, the
part map behind BODY[section]) and SEARCH evaluation. Extensions understood:
CONDSTORE/QRESYNC (RFC 7162), UIDPLUS (4315), MOVE (6851), LITERAL+ (7888),
ENABLE (5161), NAMESPACE (2342), ID (2971), UNSELECT (3691), SPECIAL-USE (6154),
SASL-IR (4959), APPENDLIMIT (7889), IDLE (2177), LIST-EXTENDED (5258), ESEARCH
return options (4731).
"""

from cryptmail.imap._lexer import Frame, StreamedLiteral
from cryptmail.imap._parser import parse_command, parse_line
from cryptmail.imap._reader import (
    AppendData,
    AppendEnd,
    AppendStart,
    ClientLine,
    CommandReader,
    CommandReady,
    ContinueLiteral,
    ReaderEvent,
    ReaderLimits,
)
from cryptmail.imap._sequence import RangeSet, SequenceSet, format_number_runs
from cryptmail.imap._utf7 import decode_mailbox_name, encode_mailbox_name

__all__ = [
    "AppendData",
    "AppendEnd",
    "AppendStart",
    "ClientLine",
    "CommandReader",
    "CommandReady",
    "ContinueLiteral",
    "Frame",
    "RangeSet",
    "ReaderEvent",
    "ReaderLimits",
    "SequenceSet",
    "StreamedLiteral",
    "decode_mailbox_name",
    "encode_mailbox_name",
    "format_number_runs",
    "parse_command",
    "parse_line",
]

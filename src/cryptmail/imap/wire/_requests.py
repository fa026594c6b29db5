"""Typed client commands: what :func:`parse_command` turns a command line into.

Every command is a frozen dataclass with its ``tag``. Mailbox names are already decoded
from modified UTF-7 (a name that does not decode is an :class:`UndecodableName`);
credentials travel in secret wrappers; strings a SEARCH matches on
are decoded from the command's CHARSET.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from cryptmail.imap.wire._sequence import SequenceSet
from cryptmail.secret import Password, SecretBytes

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "BinarySection",
    "Compress",
    "BodySection",
    "CancelUpdate",
    "Capability",
    "CatenatePart",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAttribute",
    "FetchItem",
    "GetQuota",
    "GetQuotaRoot",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "QResync",
    "Rename",
    "Search",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchOlder",
    "SearchOr",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "Section",
    "Select",
    "SetQuota",
    "Sort",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UndecodableName",
    "Unselect",
    "Unsubscribe",
]


class UndecodableName(str):
    """A mailbox name the client sent that is not valid modified UTF-7.

    A name is the client's data, not syntax, so the command still parses (as Dovecot's
    does) and its handler answers ``NO``. The value is NUL and the raw name: no stored
    name holds a NUL, so a lookup finds nothing and a pattern matches nothing even
    where a handler does not check for it.
    """

    __slots__ = ()

    def __new__(cls, raw: bytes) -> UndecodableName:
        return super().__new__(cls, "\x00" + raw.decode("latin-1"))


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command; ``name`` is the command verb in upper case."""

    name: ClassVar[str] = ""
    tag: str


# -- any state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971 ID; ``parameters`` is None for ``ID NIL``."""

    name: ClassVar[str] = "ID"
    parameters: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress(Command):
    """RFC 4978 COMPRESS; ``mechanism`` in upper case (only DEFLATE is known)."""

    name: ClassVar[str] = "COMPRESS"
    mechanism: str


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """RFC 5161 ENABLE; capability names in upper case."""

    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


# -- not authenticated ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Login(Command):
    name: ClassVar[str] = "LOGIN"
    userid: str
    password: Password


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """AUTHENTICATE; ``initial_response`` is the decoded SASL-IR (RFC 4959), b"" for ``=``."""

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: SecretBytes | None = None


# -- authenticated -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QResync:
    """QRESYNC select parameter (RFC 7162 section 3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequences: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    name: ClassVar[str] = "SELECT"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Examine(Command):
    name: ClassVar[str] = "EXAMINE"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create(Command):
    """CREATE, with RFC 6154 ``USE (...)`` special-use attributes if given."""

    name: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete(Command):
    name: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    name: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    name: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    name: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, basic or RFC 5258 extended.

    ``selection`` holds upper-case selection options (SUBSCRIBED, REMOTE,
    RECURSIVEMATCH, SPECIAL-USE); ``returns`` the return options (SUBSCRIBED,
    CHILDREN, SPECIAL-USE, STATUS); ``status_items`` the RFC 5819 STATUS items.
    ``extended`` tells whether any extended syntax was used.
    """

    name: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    name: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """STATUS; ``items`` upper case (MESSAGES, UIDNEXT, HIGHESTMODSEQ, SIZE, ...)."""

    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    """GETQUOTA (RFC 9208): the resources of one quota root."""

    name: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    """GETQUOTAROOT (RFC 9208): the quota roots of a mailbox, and their resources."""

    name: ClassVar[str] = "GETQUOTAROOT"
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    """SETQUOTA (RFC 9208); ``limits`` as (upper-case resource, limit) pairs."""

    name: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CatenatePart:
    """One part of a CATENATE (RFC 4469): ``TEXT`` bytes, or the ``URL`` of a message
    or part in the user's own mailboxes."""

    text: bytes | None = field(default=None, repr=False)
    url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (MULTIAPPEND allows several).

    ``data`` is None when the reader streamed the literal to the server through
    ``AppendData`` events; ``size`` is the literal's announced size either way.
    ``catenate`` holds the parts of a CATENATE message instead (``size`` 0).
    """

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    size: int
    data: bytes | None = field(default=None, repr=False)
    catenate: tuple[CatenatePart, ...] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Append(Command):
    name: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """IDLE (RFC 2177); the server then calls ``CommandReader.request_line`` for DONE."""

    name: ClassVar[str] = "IDLE"


# -- selected ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE; ``uids`` is set for UID EXPUNGE (RFC 4315)."""

    name: ClassVar[str] = "EXPUNGE"
    uids: SequenceSet | None = None


SectionText = Literal["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]


@dataclass(frozen=True, slots=True)
class Section:
    """A ``section`` of BODY[...]: part path ``(1, 2)`` plus text specifier."""

    part: tuple[int, ...] = ()
    text: SectionText = ""
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        pieces = [".".join(str(n) for n in self.part)] if self.part else []
        if self.text:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            spec += " (" + " ".join(f.upper() for f in self.fields) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """A FETCH item without a section: ENVELOPE, FLAGS, UID, RFC822.SIZE, MODSEQ, ..."""

    name: str


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<partial>`` or ``BODY.PEEK[...]``; ``partial`` is (offset, length)."""

    section: Section
    peek: bool = False
    partial: tuple[int, int] | None = None

    def response_key(self) -> str:
        """The item name the FETCH response uses: ``BODY[1.MIME]<0>`` (never ``.PEEK``)."""
        key = f"BODY[{self.section}]"
        if self.partial is not None:
            key += f"<{self.partial[0]}>"
        return key


@dataclass(frozen=True, slots=True)
class BinarySection:
    """RFC 3516 ``BINARY[part]<partial>``, ``BINARY.PEEK[...]`` or ``BINARY.SIZE[part]``."""

    part: tuple[int, ...] = ()
    peek: bool = False
    partial: tuple[int, int] | None = None
    size_only: bool = False

    def response_key(self) -> str:
        """``BINARY[1.2]<0>`` or ``BINARY.SIZE[1.2]`` (never ``.PEEK``)."""
        spec = ".".join(str(n) for n in self.part)
        if self.size_only:
            return f"BINARY.SIZE[{spec}]"
        key = f"BINARY[{spec}]"
        if self.partial is not None:
            key += f"<{self.partial[0]}>"
        return key


FetchItem = FetchAttribute | BodySection | BinarySection


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH or UID FETCH; macros (ALL, FAST, FULL) are already expanded."""

    name: ClassVar[str] = "FETCH"
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE; ``mode`` is ``"set"``, ``"add"`` (+FLAGS) or ``"remove"`` (-FLAGS)."""

    name: ClassVar[str] = "STORE"
    sequence: SequenceSet
    mode: Literal["set", "add", "remove"]
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(Command):
    name: ClassVar[str] = "COPY"
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    name: ClassVar[str] = "MOVE"
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """RFC 5267 CANCELUPDATE: end the live searches started by these command tags."""

    name: ClassVar[str] = "CANCELUPDATE"
    tags: tuple[str, ...]


# -- SEARCH --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """A flag test: ``\\Seen`` present (SEEN) or absent (UNSEEN); ``\\Recent`` too."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """Substring of a header field (FROM, TO, CC, BCC, SUBJECT, HEADER name value)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """Substring of the body (BODY) or of header and body (TEXT)."""

    value: str
    include_headers: bool


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE on the internal date, SENTBEFORE/SENTON/SENTSINCE on Date:, or
    SAVEDBEFORE/SAVEDON/SAVEDSINCE on the save date (RFC 8514)."""

    relation: Literal["before", "on", "since"]
    date: dt.date
    sent: bool = False
    saved: bool = False


@dataclass(frozen=True, slots=True)
class SearchSize:
    relation: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class SearchOlder:
    """RFC 5032 OLDER (``older=True``) or YOUNGER, in seconds of internal-date age."""

    seconds: int
    older: bool


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """A message set by sequence number, or by UID (``UID set``)."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """RFC 7162 MODSEQ [entry-name entry-type] mod-sequence-valzer."""

    modseq: int
    entry: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """All of ``keys``; an empty tuple is ALL."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchFlag
    | SearchHeader
    | SearchText
    | SearchDate
    | SearchSize
    | SearchOlder
    | SearchSequence
    | SearchModSeq
    | SearchNot
    | SearchOr
    | SearchAnd
)


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH or UID SEARCH. ``returns`` is the RFC 4731 RETURN list (with RFC 5182's
    SAVE and RFC 5267's UPDATE and CONTEXT), None without one; ``partial`` is RFC 5267's
    PARTIAL range of result positions, (first, last)."""

    name: ClassVar[str] = "SEARCH"
    program: SearchAnd
    charset: str | None = None
    uid: bool = False
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT or UID SORT (RFC 5256); ``criteria`` are (key, reverse) pairs, most
    significant first; ``returns`` is the RFC 5267 ESORT RETURN list, None without one;
    ``partial`` the PARTIAL range of positions in the sorted result."""

    name: ClassVar[str] = "SORT"
    criteria: tuple[tuple[str, bool], ...]
    program: SearchAnd
    charset: str = "UTF-8"
    uid: bool = False
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD or UID THREAD (RFC 5256); ``algorithm`` is ORDEREDSUBJECT or REFERENCES."""

    name: ClassVar[str] = "THREAD"
    algorithm: str
    program: SearchAnd
    charset: str = "UTF-8"
    uid: bool = False

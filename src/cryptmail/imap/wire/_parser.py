"""Parse one framed command into a typed :class:`~cryptmail.imap.wire._requests.Command`.

Grammar: RFC 3501 section 9 plus the extensions in the package docstring. Any
deviation raises :class:`~cryptmail.errors.ParseError` with the tag (once read) and
a fixed reason that never echoes the client's arguments.
"""

from __future__ import annotations

import binascii
import datetime as dt
from collections.abc import Callable
from typing import Final

from cryptmail.errors import ParseError
from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._lexer import (
    ATOM_CHARS,
    MAX_MODSEQ,
    Cursor,
    Frame,
    PendingLiteral,
    StreamedLiteral,
)
from cryptmail.imap.wire._parser_fetch import (
    parse_fetch_items,
    parse_fetch_modifiers,
    parse_store_action,
)
from cryptmail.imap.wire._parser_notify import parse_notify
from cryptmail.imap.wire._parser_return import parse_return_options
from cryptmail.imap.wire._parser_search import SearchParser, check_charset
from cryptmail.imap.wire._parser_sort import parse_sort, parse_thread
from cryptmail.imap.wire._parser_urlauth import parse_genurlauth, parse_resetkey, parse_urlfetch
from cryptmail.imap.wire._sequence import SequenceSet
from cryptmail.secret import Password, SecretBytes
from cryptmail.utf7 import decode_mailbox_name

__all__ = ["parse_append_prefix", "parse_command", "parse_line"]

_SEQ_CHARS: Final = frozenset(b"0123456789:,*")
_MAX_CANCEL_TAGS: Final = 64
_SEQ_OR_SAVED: Final = _SEQ_CHARS | frozenset(b"$")  # RFC 5182: "$" where commands take a set
_STATUS_ITEMS: Final = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE",
     "APPENDLIMIT", "DELETED", "DELETED-STORAGE", "MAILBOXID"}
)  # fmt: skip
_LIST_SELECT: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})
_MAX_ID_PAIRS: Final = 30

Handler = Callable[[Cursor, str, bool], rq.Command]


def _mailbox(cur: Cursor, raw: bytes) -> str:
    """The decoded name, or an UndecodableName for the handler to refuse with NO.

    With UTF8=ACCEPT enabled (RFC 6855) names are UTF-8 and invalid UTF-8 is BAD.
    """
    if cur.utf8:
        text = _utf8(cur, raw, "Mailbox name")
        return "INBOX" if text.upper() == "INBOX" else text
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return rq.UndecodableName(raw)
    if text.upper() == "INBOX":
        return "INBOX"
    try:
        return decode_mailbox_name(text)
    except ParseError:
        return rq.UndecodableName(raw)


def _sp_mailbox(cur: Cursor) -> str:
    cur.sp()
    return _mailbox(cur, cur.astring())


def _sp_sequence(cur: Cursor) -> SequenceSet:
    cur.sp()
    text = cur.word(_SEQ_OR_SAVED, "a sequence set")
    try:
        return SequenceSet.parse(text)
    except ParseError as exc:
        raise cur.fail(exc.reason) from exc


def _utf8(cur: Cursor, raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise cur.fail(f"{what} is not valid UTF-8") from exc


def _paren_atoms(cur: Cursor, what: str) -> list[str]:
    cur.expect_byte(b"(", "'('")
    words: list[str] = []
    if cur.skip_byte(b")"):
        return words
    while True:
        words.append(cur.atom(what).upper())
        if cur.skip_byte(b")"):
            return words
        cur.sp()


# -- command handlers: (cursor, tag, uid) -> Command ------------------------------------


def _no_args(cls: type[rq.Command]) -> Handler:
    def handler(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
        cur.expect_end()
        return cls(tag)

    return handler


def _login(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    userid = _utf8(cur, cur.astring(), "User name")
    cur.sp()
    password = Password(cur.astring())
    cur.expect_end()
    return rq.Login(tag, userid, password)


def _authenticate(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    mechanism = cur.atom("a SASL mechanism").upper()
    initial: SecretBytes | None = None
    if not cur.at_end():
        cur.sp()
        raw = cur.word(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 b"0123456789+/="), "a base64 initial response")  # fmt: skip
        if raw == "=":
            initial = SecretBytes(b"")
        else:
            try:
                initial = SecretBytes(binascii.a2b_base64(raw.encode(), strict_mode=True))
            except binascii.Error as exc:
                raise cur.fail("Invalid base64 in initial response") from exc
    cur.expect_end()
    return rq.Authenticate(tag, mechanism, initial)


def parse_append_prefix(
    frame: Frame, segment: int, *, utf8: bool = False
) -> tuple[str, str, tuple[str, ...], dt.datetime | None, int, bool] | None:
    """Tell whether the literal just announced at the end of ``frame`` is an APPEND
    message, and if so return (tag, mailbox, flags, internal_date, size, synchronizing).

    ``segment`` 0 parses from the command start; a later segment resumes right after
    a message literal of a MULTIAPPEND. Returns None for any other literal (the
    mailbox name given as a literal, or not an APPEND at all) and for malformed
    input, which the full parse then reports.
    """
    cur = Cursor(frame, segment, utf8=utf8)
    try:
        if segment == 0:
            tag = cur.tag_token()
            cur.sp()
            if cur.word(ATOM_CHARS, "a command name").upper() != "APPEND":
                return None
            mailbox = _sp_mailbox(cur)
        else:
            tag = mailbox = ""
            cur.skip_byte(b")")  # the end of the UTF8 (...) around the message before
        cur.sp()
        _extra_spaces(cur)
        flags: tuple[str, ...] = ()
        date = None
        if cur.peek() == ord("("):
            flags = cur.flag_list()
            cur.sp()
        if cur.peek() == ord('"'):
            date = cur.date_time()
            cur.sp()
        if _looks_like(cur, b"UTF8 ("):  # RFC 6855: APPEND ... UTF8 (literal8)
            cur.atom()
            cur.sp()
            cur.expect_byte(b"(", "'('")
        cur.skip_byte(b"~")  # RFC 3516 literal8: the message may hold NUL
        if cur.peek() != ord("{") or not cur.at_pending_literal():
            return None
        size, synchronizing = cur.literal_marker()
    except (ParseError, PendingLiteral):
        return None
    return tag, mailbox, flags, date, size, synchronizing


def _qresync(cur: Cursor) -> rq.QResync:
    cur.sp()
    cur.expect_byte(b"(", "'('")
    uidvalidity = cur.number(nonzero=True)
    cur.sp()
    modseq = cur.number(nonzero=True, limit=MAX_MODSEQ)
    known_uids = seqs = seq_uids = None
    if cur.skip_byte(b" "):
        if cur.peek() != ord("("):
            text = cur.word(_SEQ_CHARS, "known UIDs")
            known_uids = SequenceSet.parse(text)
            if known_uids.uses_star:
                raise cur.fail("'*' is not allowed in known UIDs")
            cur.skip_byte(b" ")
        if cur.skip_byte(b"("):
            seqs = SequenceSet.parse(cur.word(_SEQ_CHARS, "a sequence set"))
            cur.sp()
            seq_uids = SequenceSet.parse(cur.word(_SEQ_CHARS, "a UID set"))
            cur.expect_byte(b")", "')'")
    cur.expect_byte(b")", "')'")
    return rq.QResync(uidvalidity, modseq, known_uids, seqs, seq_uids)


def _select_like(cls: type[rq.Select] | type[rq.Examine]) -> Handler:
    def handler(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
        mailbox = _sp_mailbox(cur)
        condstore = False
        qresync = None
        if not cur.at_end():
            cur.sp()
            cur.expect_byte(b"(", "'('")
            while True:
                word = cur.atom("a SELECT parameter").upper()
                if word == "CONDSTORE" and not condstore:
                    condstore = True
                elif word == "QRESYNC" and qresync is None:
                    qresync = _qresync(cur)
                else:
                    raise cur.fail("Unknown or repeated SELECT parameter")
                if cur.skip_byte(b")"):
                    break
                cur.sp()
        cur.expect_end()
        return cls(tag, mailbox, condstore, qresync)

    return handler


def _create(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    mailbox = _sp_mailbox(cur)
    uses: tuple[str, ...] = ()
    if not cur.at_end():
        cur.sp()
        cur.expect_byte(b"(", "'('")
        if cur.atom("USE").upper() != "USE":
            raise cur.fail("Unknown CREATE parameter")
        cur.sp()
        uses = cur.flag_list()
        cur.expect_byte(b")", "')'")
    cur.expect_end()
    return rq.Create(tag, mailbox, uses)


def _one_mailbox(cls: type[rq.Delete] | type[rq.Subscribe] | type[rq.Unsubscribe]) -> Handler:
    def handler(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
        mailbox = _sp_mailbox(cur)
        cur.expect_end()
        return cls(tag, mailbox)

    return handler


def _rename(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    old = _sp_mailbox(cur)
    new = _sp_mailbox(cur)
    cur.expect_end()
    return rq.Rename(tag, old, new)


def _list(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    selection: set[str] = set()
    extended = False
    if cur.peek() == ord("("):
        extended = True
        for word in _paren_atoms(cur, "a LIST selection option"):
            if word not in _LIST_SELECT:
                raise cur.fail("Unknown LIST selection option")
            selection.add(word)
        cur.sp()
    reference = _mailbox(cur, cur.astring())
    cur.sp()
    patterns: list[str] = []
    if cur.skip_byte(b"("):
        extended = True
        while True:
            patterns.append(_mailbox(cur, cur.list_mailbox()))
            if cur.skip_byte(b")"):
                break
            cur.sp()
    else:
        raw = cur.list_mailbox()
        patterns.append("" if not raw else _mailbox(cur, raw))
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if not cur.at_end():
        extended = True
        cur.sp()
        if cur.atom("RETURN").upper() != "RETURN":
            raise cur.fail("Expected RETURN")
        cur.sp()
        cur.expect_byte(b"(", "'('")
        while not cur.skip_byte(b")"):
            word = cur.atom("a LIST return option").upper()
            if word == "STATUS":
                cur.sp()
                status_items = _status_items(cur)
            elif word not in _LIST_RETURN:
                raise cur.fail("Unknown LIST return option")
            returns.add(word)
            if cur.peek() != ord(")"):
                cur.sp()
    # RFC 5258 section 3: RECURSIVEMATCH alone, or with only REMOTE, is BAD.
    if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
        raise cur.fail("RECURSIVEMATCH needs another selection option")
    cur.expect_end()
    return rq.List(
        tag, reference, tuple(patterns), frozenset(selection), frozenset(returns),
        status_items, extended,
    )  # fmt: skip


def _lsub(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    reference = _sp_mailbox(cur)
    cur.sp()
    raw = cur.list_mailbox()
    cur.expect_end()
    return rq.Lsub(tag, reference, _mailbox(cur, raw) if raw else "")


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = _paren_atoms(cur, "a STATUS item")
    if not items or any(item not in _STATUS_ITEMS for item in items):
        raise cur.fail("Invalid STATUS item list")
    return tuple(dict.fromkeys(items))


def _status(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    mailbox = _sp_mailbox(cur)
    cur.sp()
    items = _status_items(cur)
    cur.expect_end()
    return rq.Status(tag, mailbox, items)


def _getquota(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    root = _utf8(cur, cur.astring(), "quota root")
    cur.expect_end()
    return rq.GetQuota(tag, root)


def _getquotaroot(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    mailbox = _sp_mailbox(cur)
    cur.expect_end()
    return rq.GetQuotaRoot(tag, mailbox)


def _setquota(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    root = _utf8(cur, cur.astring(), "quota root")
    cur.sp()
    cur.expect_byte(b"(", "'('")
    limits: list[tuple[str, int]] = []
    while not cur.skip_byte(b")"):
        if limits:
            cur.sp()
        resource = cur.atom("a quota resource").upper()
        cur.sp()
        limits.append((resource, cur.number()))
    cur.expect_end()
    return rq.SetQuota(tag, root, tuple(limits))


def _extra_spaces(cur: Cursor) -> None:
    """imapclient's multiappend() puts two spaces before each message; Dovecot takes
    them, and so do we (between the messages of an APPEND only)."""
    while cur.skip_byte(b" "):
        pass


def _append(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    mailbox = _sp_mailbox(cur)
    messages: list[rq.AppendMessage] = []
    while not cur.at_end() or not messages:
        cur.sp()
        _extra_spaces(cur)
        flags: tuple[str, ...] = ()
        date = None
        if cur.peek() == ord("("):
            flags = cur.flag_list()
            if "\\Recent" in flags:
                raise cur.fail("\\Recent cannot be stored")
            cur.sp()
        if cur.peek() == ord('"'):
            date = cur.date_time()
            cur.sp()
        if _looks_like(cur, b"CATENATE "):
            cur.atom()
            cur.sp()
            messages.append(rq.AppendMessage(flags, date, 0, catenate=_catenate_parts(cur)))
            continue
        utf8_data = _looks_like(cur, b"UTF8 (")
        if utf8_data:  # RFC 6855 append-data: UTF8 (literal8)
            cur.atom()
            cur.sp()
            cur.expect_byte(b"(", "'('")
            if cur.peek() != ord("~"):
                raise cur.fail("UTF8 needs a literal8")
        cur.skip_byte(b"~")  # RFC 3516 literal8
        if cur.peek() != ord("{"):
            raise cur.fail("Expected the message literal")
        payload = cur.literal_payload()
        if utf8_data:
            cur.expect_byte(b")", "')' after the UTF8 literal")
        if isinstance(payload, StreamedLiteral):
            messages.append(rq.AppendMessage(flags, date, payload.size))
        else:
            messages.append(rq.AppendMessage(flags, date, len(payload), payload))
    return rq.Append(tag, mailbox, tuple(messages))


_MAX_CATENATE_PARTS: Final = 256


def _catenate_parts(cur: Cursor) -> tuple[rq.CatenatePart, ...]:
    """``( cat-part *(SP cat-part) )``: ``TEXT literal`` or ``URL astring`` (RFC 4469)."""
    cur.expect_byte(b"(", "'('")
    parts: list[rq.CatenatePart] = []
    while True:
        word = cur.atom("TEXT or URL").upper()
        cur.sp()
        if word == "TEXT":
            cur.skip_byte(b"~")  # literal8 (RFC 3516)
            if cur.peek() != ord("{"):
                raise cur.fail("CATENATE TEXT needs a literal")
            parts.append(rq.CatenatePart(text=cur.string()))
        elif word == "URL":
            parts.append(rq.CatenatePart(url=_utf8(cur, cur.astring(), "URL")))
        else:
            raise cur.fail("Expected TEXT or URL")
        if len(parts) > _MAX_CATENATE_PARTS:
            raise cur.fail("Too many CATENATE parts")
        if cur.skip_byte(b")"):
            return tuple(parts)
        cur.sp()


def _expunge(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    uids = _sp_sequence(cur) if uid else None
    cur.expect_end()
    return rq.Expunge(tag, uids)


def _search(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    returns: tuple[str, ...] | None = None
    charset: str | None = None
    codec = "utf-8"
    cur.sp()
    partial: tuple[int, int] | None = None
    if cur.peek() in (ord("R"), ord("r")) and _looks_like(cur, b"RETURN ("):
        options = parse_return_options(cur)
        returns, partial = options.names, options.partial
        cur.sp()
    if cur.peek() in (ord("C"), ord("c")) and _looks_like(cur, b"CHARSET "):
        cur.atom()
        cur.sp()
        charset = cur.astring().decode("ascii", "replace").upper()
        codec = check_charset(charset, tag)
        cur.sp()
    program = SearchParser(cur, codec).key_list_after_space()
    return rq.Search(tag, program, charset, uid, returns, partial)


def _looks_like(cur: Cursor, prefix: bytes) -> bool:
    return cur.lookahead(len(prefix)).upper() == prefix


def _fetch(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    sequence = _sp_sequence(cur)
    cur.sp()
    items = parse_fetch_items(cur)
    changed_since: int | None = None
    vanished = False
    if not cur.at_end():
        cur.sp()
        changed_since, vanished = parse_fetch_modifiers(cur)
        if vanished and not uid:
            raise cur.fail("VANISHED is only allowed with UID FETCH")
    cur.expect_end()
    if changed_since is not None and rq.FetchAttribute("MODSEQ") not in items:
        items = (*items, rq.FetchAttribute("MODSEQ"))
    return rq.Fetch(tag, sequence, items, uid, changed_since, vanished)


def _store(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    sequence = _sp_sequence(cur)
    cur.sp()
    unchanged_since = None
    if cur.skip_byte(b"("):
        if cur.atom("UNCHANGEDSINCE").upper() != "UNCHANGEDSINCE":
            raise cur.fail("Unknown STORE modifier")
        cur.sp()
        unchanged_since = cur.number(limit=MAX_MODSEQ)
        cur.expect_byte(b")", "')'")
        cur.sp()
    mode, silent, flags = parse_store_action(cur)
    cur.expect_end()
    return rq.Store(tag, sequence, mode, flags, silent, uid, unchanged_since)


def _copy_like(cls: type[rq.Copy] | type[rq.Move]) -> Handler:
    def handler(cur: Cursor, tag: str, uid: bool) -> rq.Command:
        sequence = _sp_sequence(cur)
        mailbox = _sp_mailbox(cur)
        cur.expect_end()
        return cls(tag, sequence, mailbox, uid)

    return handler


def _cancelupdate(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    # RFC 5267: CANCELUPDATE SP tag-string *(SP tag-string); tag-string = string
    tags: list[str] = []
    while not cur.at_end() or not tags:
        cur.sp()
        if len(tags) >= _MAX_CANCEL_TAGS:
            raise cur.fail("Too many tags")
        tags.append(cur.string().decode("ascii", "replace"))
    return rq.CancelUpdate(tag, tuple(tags))


def _enable(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    names: list[str] = []
    while not cur.at_end() or not names:
        cur.sp()
        names.append(cur.atom("a capability").upper())
    return rq.Enable(tag, tuple(names))


def _compress(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    mechanism = cur.atom("a compression mechanism").upper()
    cur.expect_end()
    return rq.Compress(tag, mechanism)


def _id(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    cur.sp()
    if cur.peek() != ord("("):
        if cur.nstring() is not None:
            raise cur.fail("Expected NIL or a parameter list")
        cur.expect_end()
        return rq.Id(tag, None)
    cur.expect_byte(b"(", "'('")
    pairs: list[tuple[str, str | None]] = []
    while not cur.skip_byte(b")"):
        if pairs:
            cur.sp()
        key = _utf8(cur, cur.string(), "ID field")
        cur.sp()
        raw = cur.nstring()
        pairs.append((key, None if raw is None else _utf8(cur, raw, "ID value")))
        if len(pairs) > _MAX_ID_PAIRS:
            raise cur.fail("Too many ID parameters")
    cur.expect_end()
    return rq.Id(tag, tuple(pairs))


def _notify(cur: Cursor, tag: str, _uid: bool) -> rq.Command:
    return parse_notify(cur, tag, _mailbox)


_HANDLERS: Final[dict[str, Handler]] = {
    "CAPABILITY": _no_args(rq.Capability),
    "NOOP": _no_args(rq.Noop),
    "LOGOUT": _no_args(rq.Logout),
    "STARTTLS": _no_args(rq.StartTLS),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _select_like(rq.Select),
    "EXAMINE": _select_like(rq.Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(rq.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(rq.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(rq.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(rq.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _no_args(rq.Check),
    "CLOSE": _no_args(rq.Close),
    "UNSELECT": _no_args(rq.Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_like(rq.Copy),
    "MOVE": _copy_like(rq.Move),
    "ENABLE": _enable,
    "CANCELUPDATE": _cancelupdate,
    "ID": _id,
    "IDLE": _no_args(rq.Idle),
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
    "COMPRESS": _compress,
    "SORT": parse_sort,
    "THREAD": parse_thread,
    "NOTIFY": _notify,
    "GENURLAUTH": parse_genurlauth,
    "URLFETCH": parse_urlfetch,
    "RESETKEY": lambda cur, tag, _uid: parse_resetkey(cur, tag, _sp_mailbox),
}
_UID_COMMANDS: Final = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE"}) | {
    "SORT", "THREAD",
}  # fmt: skip


def parse_command(frame: Frame, *, utf8: bool = False) -> rq.Command:
    """Parse a complete frame; ``utf8``: mailbox names are UTF-8 (UTF8=ACCEPT).

    Raises:
        ParseError: the command is malformed or unknown; ``tag`` is set once read.
        UnknownCharset: SEARCH named a charset we cannot decode (answer NO).
    """
    cur = Cursor(frame, utf8=utf8)
    tag = cur.tag_token()
    cur.sp()
    verb = cur.word(ATOM_CHARS, "a command name").upper()
    uid = False
    if verb == "UID":
        uid = True
        cur.sp()
        verb = cur.word(ATOM_CHARS, "a command name").upper()
        if verb not in _UID_COMMANDS:
            raise cur.fail("Unknown UID command")
    handler = _HANDLERS.get(verb)
    if handler is None:
        raise cur.fail("Unknown command")
    return handler(cur, tag, uid)


def parse_line(line: bytes, *literals: bytes) -> rq.Command:
    """Parse a command given as its line pieces: a test and tooling convenience.

    ``line`` may hold CRLF-separated pieces, each but the last ending in a literal
    marker whose payload is the matching item of ``literals``.
    """
    lines = line.split(b"\r\n")
    if len(lines) == len(literals) + 2 and lines[-1] == b"":
        lines.pop()
    if len(lines) != len(literals) + 1:
        raise ParseError("Literal count does not match the command text")
    return parse_command(Frame(lines, list(literals)))

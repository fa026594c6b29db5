"""The command reader and parser: framing, literals, limits, streaming APPEND, commands."""

from __future__ import annotations

import datetime as dt

import pytest

from cryptmail.errors import InputTooLarge, ParseError, UnknownCharset
from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._parser import parse_line
from cryptmail.imap.wire._reader import (
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
from cryptmail.imap.wire._sequence import SequenceSet


def drain(reader: CommandReader) -> list[ReaderEvent]:
    events: list[ReaderEvent] = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    return events


def feed_all(data: bytes, limits: ReaderLimits | None = None, step: int = 0) -> list[object]:
    """Feed in steps, collecting events and errors (as the server would handle them)."""
    reader = CommandReader(limits)
    out: list[object] = []
    step = step or len(data)
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        while True:
            try:
                event = reader.next_event()
            except ParseError as exc:
                out.append(exc)
                continue
            except InputTooLarge as exc:
                out.append(exc)
                if not exc.recoverable:
                    return out
                continue
            if event is None:
                break
            out.append(event)
    return out


# -- framing ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_pipelined_commands_any_chunking(step: int) -> None:
    data = b"a1 NOOP\r\na2 CAPABILITY\nA3 logout\r\n"
    events = feed_all(data, step=step)
    assert [type(e.command) for e in events if isinstance(e, CommandReady)] == [
        rq.Noop,
        rq.Capability,
        rq.Logout,
    ]


def test_synchronizing_literal_asks_for_continuation_once() -> None:
    reader = CommandReader()
    reader.feed(b"a1 LOGIN {5}\r\n")
    assert drain(reader) == [ContinueLiteral("a1")]
    reader.feed(b"alice {6+}\r\nsecret\r\n")
    (ready,) = drain(reader)
    assert isinstance(ready, CommandReady)
    login = ready.command
    assert isinstance(login, rq.Login)
    assert login.userid == "alice"
    assert login.password.reveal() == b"secret"
    assert "secret" not in repr(login)


def test_literal_may_hold_crlf_and_braces() -> None:
    events = feed_all(b'a1 LOGIN {7+}\r\nx\r\n{1}\r " "\r\n')
    (ready,) = events
    assert isinstance(ready, CommandReady) and isinstance(ready.command, rq.Login)
    assert ready.command.userid == "x\r\n{1}\r"


def test_parse_error_carries_tag_and_reader_lives_on() -> None:
    events = feed_all(b"t1 FROB\r\nt2 FETCH x FLAGS\r\nt3 NOOP\r\n")
    assert isinstance(events[0], ParseError) and events[0].tag == "t1"
    assert isinstance(events[1], ParseError) and events[1].tag == "t2"
    assert isinstance(events[2], CommandReady)


def test_blank_lines_are_ignored_and_bad_tag_has_none() -> None:
    events = feed_all(b"\r\n\r\n+x NOOP\r\n")
    assert len(events) == 1 and isinstance(events[0], ParseError) and events[0].tag is None


def test_line_limit_checked_before_buffering() -> None:
    reader = CommandReader(ReaderLimits(max_line=100))
    reader.feed(b"a1 NOOP " + b"x" * 200)  # no newline yet
    with pytest.raises(InputTooLarge) as info:
        reader.next_event()
    assert not info.value.recoverable
    with pytest.raises(InputTooLarge):
        reader.next_event()  # dead from now on


def test_oversized_sync_literal_is_refused_and_skipped() -> None:
    events = feed_all(
        b"a1 LOGIN {2000}\r\na2 NOOP\r\n", ReaderLimits(max_literal=1000, max_append=100)
    )
    assert isinstance(events[0], InputTooLarge) and events[0].recoverable
    assert events[0].tag == "a1"
    assert isinstance(events[1], CommandReady) and events[1].command.tag == "a2"


def test_oversized_non_sync_literal_is_discarded_not_executed() -> None:
    smuggled = b"x3 DELETE INBOX\r\n" * 10
    data = b"a1 LOGIN {%d+}\r\n" % len(smuggled) + smuggled + b" pw\r\na2 NOOP\r\n"
    events = feed_all(data, ReaderLimits(max_literal=16), step=5)
    assert isinstance(events[0], InputTooLarge) and events[0].recoverable
    assert [e.command.tag for e in events if isinstance(e, CommandReady)] == ["a2"]


def test_command_size_limit_over_many_literals() -> None:
    literal = b"{10+}\r\n0123456789 "
    data = b"a1 ID (" + literal * 10 + b")\r\n"
    events = feed_all(data, ReaderLimits(max_command=60))
    assert any(isinstance(e, InputTooLarge) for e in events)


def test_request_line_for_idle_done() -> None:
    reader = CommandReader()
    reader.feed(b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n")
    (idle,) = [reader.next_event()]
    assert isinstance(idle, CommandReady) and isinstance(idle.command, rq.Idle)
    reader.request_line()
    assert reader.next_event() == ClientLine(b"DONE")
    assert isinstance(reader.next_event(), CommandReady)


# -- streaming APPEND ----------------------------------------------------------------------


def test_append_streams_in_bounded_chunks() -> None:
    body = b"Subject: x\r\n\r\n" + b"y" * 100_000
    reader = CommandReader(ReaderLimits(chunk_size=4096, max_literal=10))
    reader.feed(
        b'A1 APPEND "Sent" (\\Seen $Label) " 5-Mar-2024 10:00:00 +0000" {%d}\r\n' % len(body)
    )
    (start,) = drain(reader)
    assert isinstance(start, AppendStart)
    assert start.mailbox == "Sent" and start.flags == ("\\Seen", "$Label")
    assert start.internal_date == dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)
    assert start.size == len(body) and start.needs_continuation
    received = bytearray()
    for offset in range(0, len(body), 10_000):
        reader.feed(body[offset : offset + 10_000])
        for event in drain(reader):
            if isinstance(event, AppendEnd):
                assert bytes(received) == body
                continue
            assert isinstance(event, AppendData)
            assert len(event.data) <= 4096
            received += event.data
        assert reader.buffered < 20_000  # never the whole message
    reader.feed(b"\r\n")
    (ready,) = drain(reader)
    assert isinstance(ready, CommandReady)
    append = ready.command
    assert isinstance(append, rq.Append)
    assert append.messages[0].size == len(body) and append.messages[0].data is None
    assert bytes(received) == body


def test_multiappend_with_literal_mailbox_name() -> None:
    data = b"A1 APPEND {4}\r\nWork {3+}\r\nabc (\\Draft) {2+}\r\nde\r\n"
    events = feed_all(data, step=2)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ContinueLiteral"  # for the mailbox name literal
    starts = [e for e in events if isinstance(e, AppendStart)]
    assert [(s.mailbox, s.flags, s.size, s.index) for s in starts] == [
        ("Work", (), 3, 0),
        ("Work", ("\\Draft",), 2, 1),
    ]
    payload = b"".join(e.data for e in events if isinstance(e, AppendData))
    assert payload == b"abcde"
    assert isinstance(events[-1], CommandReady)


def test_append_too_large_refused_before_data() -> None:
    events = feed_all(b"A1 APPEND INBOX {500}\r\nA2 NOOP\r\n", ReaderLimits(max_append=100))
    assert isinstance(events[0], InputTooLarge) and events[0].recoverable
    assert "TOOBIG" in events[0].reason
    assert isinstance(events[1], CommandReady)


def test_abort_sync_append_before_invitation() -> None:
    reader = CommandReader()
    reader.feed(b"A1 APPEND Nope {5}\r\n")
    assert isinstance(reader.next_event(), AppendStart)
    reader.abort_command()  # server answers A1 NO [TRYCREATE]; the client sends no data
    reader.feed(b"A2 NOOP\r\n")
    assert isinstance(reader.next_event(), CommandReady)


def test_abort_non_sync_append_discards_message() -> None:
    reader = CommandReader()
    reader.feed(b"A1 APPEND Nope {17+}\r\nA9 DELETE INBOX\r\n\r\nA2 NOOP\r\n")
    assert isinstance(reader.next_event(), AppendStart)
    reader.abort_command()
    (event,) = drain(reader)
    assert isinstance(event, CommandReady) and event.command.tag == "A2"


def test_garbage_after_append_literal_is_parse_error() -> None:
    events = feed_all(b"A1 APPEND INBOX {1+}\r\nx junk\r\n")
    assert isinstance(events[-1], ParseError) and events[-1].tag == "A1"


# -- commands ----------------------------------------------------------------------------


def test_login_and_authenticate() -> None:
    login = parse_line(b'a LOGIN "al\\"ice" "p w"')
    assert isinstance(login, rq.Login) and login.userid == 'al"ice'
    auth = parse_line(b"a AUTHENTICATE plain AGFsaWNlAHB3")
    assert isinstance(auth, rq.Authenticate) and auth.mechanism == "PLAIN"
    assert auth.initial_response is not None and auth.initial_response.reveal() == b"\0alice\0pw"
    empty = parse_line(b"a AUTHENTICATE PLAIN =")
    assert isinstance(empty, rq.Authenticate) and empty.initial_response is not None
    assert empty.initial_response.reveal() == b""
    with pytest.raises(ParseError):
        parse_line(b"a AUTHENTICATE PLAIN ###")


def test_select_qresync_and_condstore() -> None:
    cmd = parse_line(
        b"A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:5 9:13)))"
    )
    assert isinstance(cmd, rq.Select) and cmd.qresync is not None
    assert cmd.qresync.known_uids == SequenceSet.parse("41:211,214:541")
    assert cmd.qresync.known_sequences == SequenceSet.parse("1:5")
    assert parse_line(b"a examine inbox (condstore)") == rq.Examine("a", "INBOX", True)


def test_mailbox_names_are_decoded() -> None:
    cmd = parse_line(b"a CREATE Entw&APw-rfe (USE (\\Drafts))")
    assert cmd == rq.Create("a", "Entwürfe", ("\\Drafts",))
    # Not valid modified UTF-7: the client's data, refused with NO by the handler.
    bad = parse_line(b"a CREATE &AGE-")
    assert isinstance(bad, rq.Create) and isinstance(bad.mailbox, rq.UndecodableName)
    assert parse_line(b'a RENAME "a b" c') == rq.Rename("a", "a b", "c")


def test_list_variants() -> None:
    basic = parse_line(b'a LIST "" %')
    assert isinstance(basic, rq.List) and not basic.extended and basic.patterns == ("%",)
    ext = parse_line(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("*" INBOX) RETURN (CHILDREN SPECIAL-USE '
        b"STATUS (MESSAGES HIGHESTMODSEQ))"
    )
    assert isinstance(ext, rq.List) and ext.extended
    assert ext.selection == {"SUBSCRIBED", "RECURSIVEMATCH"}
    assert ext.returns == {"CHILDREN", "SPECIAL-USE", "STATUS"}
    assert ext.status_items == ("MESSAGES", "HIGHESTMODSEQ")
    with pytest.raises(ParseError):
        parse_line(b'a LIST (RECURSIVEMATCH) "" *')
    assert parse_line(b'a LSUB "" "*"') == rq.Lsub("a", "", "*")


def test_status() -> None:
    cmd = parse_line(b"a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)")
    assert cmd == rq.Status("a", "INBOX", ("MESSAGES", "UIDNEXT", "HIGHESTMODSEQ"))
    with pytest.raises(ParseError):
        parse_line(b"a STATUS INBOX (FOO)")


def test_fetch_items_and_macros() -> None:
    cmd = parse_line(
        b"a UID FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS.NOT (Received X-Spam)]<10.20> "
        b"BODY[1.MIME] BODY[] BODY[TEXT] RFC822.SIZE BODYSTRUCTURE) (CHANGEDSINCE 5 VANISHED)"
    )
    assert isinstance(cmd, rq.Fetch) and cmd.uid and cmd.vanished and cmd.changed_since == 5
    first = cmd.items[0]
    assert isinstance(first, rq.BodySection) and first.peek and first.partial == (10, 20)
    assert first.section == rq.Section((1, 2), "HEADER.FIELDS.NOT", ("Received", "X-Spam"))
    assert first.response_key() == "BODY[1.2.HEADER.FIELDS.NOT (RECEIVED X-SPAM)]<10>"
    assert rq.FetchAttribute("MODSEQ") in cmd.items
    full = parse_line(b"a FETCH 2 full")
    assert isinstance(full, rq.Fetch)
    assert [i.name for i in full.items if isinstance(i, rq.FetchAttribute)] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY",
    ]  # fmt: skip
    for bad in (
        b"a FETCH 1 (BODY[MIME])",
        b"a FETCH 1 (BODY[1.FOO])",
        b"a FETCH 1 (FLAGS) (VANISHED)",
        b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",
        b"a FETCH 1 ()",
        b"a FETCH 1 (BODY[]<1.0>)",
    ):
        with pytest.raises(ParseError):
            parse_line(bad)


def test_store_variants() -> None:
    cmd = parse_line(b"a UID STORE 1:3 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT \\seen x")
    assert cmd == rq.Store(
        "a", SequenceSet.parse("1:3"), "remove", ("\\Seen", "x"), True, True, 320162338
    )
    with pytest.raises(ParseError):
        parse_line(b"a STORE 1 FLAGS (\\Recent)")


def test_copy_move_expunge_enable_id_namespace() -> None:
    assert parse_line(b"a UID MOVE 4:7 Trash") == rq.Move(
        "a", SequenceSet.parse("4:7"), "Trash", True
    )
    assert parse_line(b"a COPY 1 Trash") == rq.Copy("a", SequenceSet.parse("1"), "Trash")
    assert parse_line(b"a UID EXPUNGE 3") == rq.Expunge("a", SequenceSet.parse("3"))
    assert parse_line(b"a EXPUNGE") == rq.Expunge("a")
    assert parse_line(b"a ENABLE qresync CONDSTORE") == rq.Enable("a", ("QRESYNC", "CONDSTORE"))
    assert parse_line(b"a ID NIL") == rq.Id("a", None)
    assert parse_line(b'a ID ("name" "imaptest" "x" NIL)') == rq.Id(
        "a", (("name", "imaptest"), ("x", None))
    )
    assert parse_line(b"a NAMESPACE") == rq.Namespace("a")
    with pytest.raises(ParseError):
        parse_line(b"a UID NOOP")
    with pytest.raises(ParseError):
        parse_line(b"a NOOP extra")


def test_search_program() -> None:
    cmd = parse_line(
        b"a UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR HEADER X-Foo {4+}\r\n"
        b" NOT (SEEN SINCE 1-Feb-2024) 1:5,7 UID 9:* LARGER 100 MODSEQ 620162338 "
        b'SENTON "3-Mar-2024" NEW',
        b" \xc3\xa4b",
    )
    assert isinstance(cmd, rq.Search) and cmd.uid and cmd.charset == "UTF-8"
    assert cmd.returns == ("MIN", "COUNT")
    keys = cmd.program.keys
    assert keys[0] == rq.SearchOr(
        rq.SearchHeader("X-Foo", " äb"),
        rq.SearchNot(
            rq.SearchAnd((rq.SearchFlag("\\Seen"), rq.SearchDate("since", dt.date(2024, 2, 1))))
        ),
    )
    assert keys[1] == rq.SearchSequence(SequenceSet.parse("1:5,7"))
    assert keys[2] == rq.SearchSequence(SequenceSet.parse("9:*"), uid=True)
    assert keys[3] == rq.SearchSize("larger", 100)
    assert keys[4] == rq.SearchModSeq(620162338)
    assert keys[5] == rq.SearchDate("on", dt.date(2024, 3, 3), sent=True)


def test_savedate_and_objectid_items() -> None:
    cmd = parse_line(b"a UID FETCH 1:* (SAVEDATE EMAILID THREADID)")
    assert isinstance(cmd, rq.Fetch)
    assert [i.name for i in cmd.items if isinstance(i, rq.FetchAttribute)] == [
        "SAVEDATE", "EMAILID", "THREADID", ]  # fmt: skip
    status = parse_line(b"a STATUS INBOX (MAILBOXID SIZE)")
    assert isinstance(status, rq.Status) and status.items == ("MAILBOXID", "SIZE")
    search = parse_line(b"a SEARCH SAVEDBEFORE 1-Feb-2024 SAVEDATESUPPORTED SAVEDON 2-Feb-2024")
    assert isinstance(search, rq.Search)
    assert search.program.keys == (
        rq.SearchDate("before", dt.date(2024, 2, 1), saved=True),
        rq.SearchAnd(()),
        rq.SearchDate("on", dt.date(2024, 2, 2), saved=True),
    )
    for bad in (b"a SEARCH SAVEDSINCE", b"a SEARCH SAVEDON 30-Feb-2024", b"a FETCH 1 MAILBOXID"):
        with pytest.raises(ParseError):
            parse_line(bad)


def test_search_refusals() -> None:
    with pytest.raises(UnknownCharset):
        parse_line(b"a SEARCH CHARSET X-NOPE FROM x")
    with pytest.raises(ParseError):
        parse_line(b"a SEARCH")
    with pytest.raises(ParseError):
        parse_line(b"a SEARCH FROBNICATE")
    with pytest.raises(ParseError):
        parse_line(b"a SEARCH SINCE 31-Feb-2024")
    with pytest.raises(ParseError):
        parse_line(b"a SEARCH " + b"NOT " * 500 + b"ALL")
    with pytest.raises(ParseError):
        parse_line(b"a SEARCH " + b"(" * 500 + b"ALL" + b")" * 500)
    with pytest.raises(ParseError):
        parse_line(b'a SEARCH CHARSET US-ASCII BODY "\xff"')


def test_append_date_time_formats() -> None:
    cmd = parse_line(b'a APPEND INBOX "12-Jan-2020 23:59:59 -0130" {1}\r\n', b"x")
    assert isinstance(cmd, rq.Append)
    stamp = cmd.messages[0].internal_date
    assert stamp is not None and stamp.utcoffset() == -dt.timedelta(hours=1, minutes=30)
    with pytest.raises(ParseError):
        parse_line(b'a APPEND INBOX "12-Foo-2020 23:59:59 -0130" {1}\r\n', b"x")


def test_abort_between_multiappend_messages_skips_the_rest() -> None:
    reader = CommandReader()
    reader.feed(b"A1 APPEND INBOX {1+}\r\nx {17+}\r\nA9 DELETE INBOX\r\n\r\nA2 NOOP\r\n")
    assert isinstance(reader.next_event(), AppendStart)
    assert reader.next_event() == AppendData(b"x")
    assert reader.next_event() == AppendEnd()
    assert isinstance(reader.next_event(), AppendStart)  # second message: refuse it
    reader.abort_command()
    (event,) = drain(reader)
    assert isinstance(event, CommandReady) and event.command.tag == "A2"


def test_abort_after_append_end_before_next_message() -> None:
    reader = CommandReader()
    reader.feed(b"A1 APPEND INBOX {1+}\r\nx")
    assert isinstance(reader.next_event(), AppendStart)
    assert reader.next_event() == AppendData(b"x")
    assert reader.next_event() == AppendEnd()
    reader.abort_command()  # e.g. quota exceeded after the first message
    reader.feed(b" {17+}\r\nA9 DELETE INBOX\r\n\r\nA2 NOOP\r\n")
    (event,) = drain(reader)
    assert isinstance(event, CommandReady) and event.command.tag == "A2"


def test_quota_commands() -> None:
    assert parse_line(b'q1 GETQUOTAROOT "Entw&APw-rfe"') == rq.GetQuotaRoot("q1", "Entwürfe")
    assert parse_line(b'q2 getquota "User quota"') == rq.GetQuota("q2", "User quota")
    assert parse_line(b'q3 SETQUOTA "" (storage 512 MESSAGE 10)') == rq.SetQuota(
        "q3", "", (("STORAGE", 512), ("MESSAGE", 10))
    )
    assert parse_line(b"q4 SETQUOTA x ()") == rq.SetQuota("q4", "x", ())
    status = parse_line(b"s STATUS INBOX (DELETED DELETED-STORAGE)")
    assert isinstance(status, rq.Status) and status.items == ("DELETED", "DELETED-STORAGE")


@pytest.mark.parametrize(
    "line",
    [b"q GETQUOTA", b'q SETQUOTA "" (STORAGE)', b'q SETQUOTA "" STORAGE 1', b"q GETQUOTAROOT"],
)
def test_malformed_quota_commands_are_parse_errors(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_line(line)


def test_multiappend_tolerates_imapclients_double_spaces() -> None:
    stream = b"a APPEND Archive {2+}\r\nm1  {2+}\r\nm2\r\n"
    reader = CommandReader()
    reader.feed(stream)
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    assert [type(e).__name__ for e in events].count("AppendStart") == 2
    done = events[-1]
    assert isinstance(done, CommandReady) and isinstance(done.command, rq.Append)
    assert len(done.command.messages) == 2

"""SEARCH and UID SEARCH (with ESEARCH's RETURN and CONDSTORE's MODSEQ).

The protocol layer evaluates programs synchronously over :class:`MessageView`
objects, cheap keys first. We run that evaluation in a worker thread; a view that
needs more than flags and numbers (sizes, headers, text) asks the event loop for the
cached facts and for byte ranges of the message, so only the messages a program
really needs to read are decrypted, and bodies stream instead of loading whole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import re
import threading
from collections.abc import Collection, Coroutine, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from cryptmail.concurrency import run_calling_back
from cryptmail.db import utcnow
from cryptmail.imap.message._search import SearchContext, compile_search
from cryptmail.imap.message._textsearch import iter_message_text
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._fetch import Facts, load_facts
from cryptmail.imap.server._fulltext import search_oracle
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server.commands._context import Matcher, frozen_program, start_live_search
from cryptmail.imap.server.commands._esearch import esearch_line, saved_numbers
from cryptmail.imap.wire._requests import (
    Search,
    SearchAnd,
    SearchFlag,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
)
from cryptmail.imap.wire._response import tagged
from cryptmail.store import RECENT_FLAG, MessageRow, OpenedBlob, open_blob, read_range

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

T = TypeVar("T")
_PIECE: Final = 256 * 1024
_FIELD_SPLIT: Final = re.compile(rb"\r?\n(?![ \t])")


class _Abandoned(Exception):
    """The search thread's call found its search abandoned (the session was cancelled)."""


class _Bridge:
    """Runs coroutines on the session's loop from the search thread.

    A search whose session is cancelled (a stop, a client gone mid-command) is
    `abandon`ed: the call the thread waits on is cancelled and every later one raises,
    so the thread ends. Else it could wait for ever on a call the loop never ran (queued
    as `asyncio.run` closed the loop), and the interpreter's exit, which joins the
    pool's threads, with it: `serve` hung after "cryptmail stopped" on a SIGTERM that
    came mid-SEARCH (tests/integration/test_serve_exit.py).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._abandoned = False
        self._waiting: concurrent.futures.Future[Any] | None = None

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._abandoned:
                work.close()  # never scheduled: no "never awaited" warning
                raise _Abandoned("the search was abandoned")
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
            self._waiting = future
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:
            raise _Abandoned("the search was abandoned") from exc
        finally:
            with self._lock:
                self._waiting = None

    def abandon(self) -> None:
        """End the search thread's waits (on the loop's thread, as its search ends)."""
        with self._lock:
            self._abandoned = True
            if self._waiting is not None:
                self._waiting.cancel()


class _View:
    """One message as SEARCH sees it; expensive facts are loaded on first use."""

    def __init__(
        self, bridge: _Bridge, selected: SelectedMailbox, sequence: int, row: MessageRow
    ) -> None:
        self._bridge = bridge
        self._selected = selected
        self.sequence = sequence
        self._row = row
        self.uid = row.uid
        self.blob_id = row.blob_id
        self.modseq = row.modseq
        self.internal_date: dt.datetime = row.internal_date
        self.save_date: dt.datetime = row.saved_at or row.internal_date
        flags = set(row.flags)
        if row.uid in selected.recent:
            flags.add(RECENT_FLAG)
        self.flags = frozenset(flags)
        self._facts: Facts | None = None
        self._opened: OpenedBlob | None = None
        self._fields: list[tuple[bytes, bytes]] | None = None

    def _load(self) -> Facts:
        if self._facts is None:
            self._facts = self._bridge.call(load_facts(self._selected, self._row))
        return self._facts

    def _blob(self) -> OpenedBlob:
        if self._opened is None:
            facts = self._load()
            self._opened = self._bridge.call(
                open_blob(
                    self._selected.context.blobs, self._selected.account, self._row.blob_id,
                    message_key=facts.key.message_key, payload_key=facts.key.payload_key,
                    expect_sealed=self._row.sealed,
                )
            )  # fmt: skip
        return self._opened

    def _read(self, offset: int, length: int) -> Iterator[bytes]:
        opened = self._blob()
        blobs = self._selected.context.blobs
        end = offset + length
        while offset < end:
            step = min(_PIECE, end - offset)
            data = self._bridge.call(read_range(blobs, opened, offset, step))
            if not data:
                return
            offset += len(data)
            yield data

    @property
    def size(self) -> int:
        return self._load().analysis.rfc822_size

    def header_values(self, name: str) -> Sequence[bytes]:
        if self._fields is None:
            root = self._load().analysis.part_map.parts[0]
            header = b"".join(self._read(root.header_offset, root.header_size))
            fields = []
            for raw in _FIELD_SPLIT.split(header):
                key, colon, value = raw.partition(b":")
                if colon:
                    fields.append((key.strip().lower(), value.lstrip(b" \t").rstrip(b"\r\n")))
            self._fields = fields
        wanted = name.lower().encode("ascii", "replace")
        return [value for key, value in self._fields if key == wanted]

    def text(self, *, include_headers: bool) -> Iterable[str]:
        part_map = self._load().analysis.part_map
        return iter_message_text(self._read, part_map, include_headers=include_headers)


def _uses_modseq(key: SearchKey) -> bool:
    if isinstance(key, SearchModSeq):
        return True
    if isinstance(key, SearchAnd):
        return any(_uses_modseq(k) for k in key.keys)
    if isinstance(key, SearchOr):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, SearchNot):
        return _uses_modseq(key.key)
    return False


def _uses_recent(key: SearchKey) -> bool:
    if isinstance(key, SearchFlag):
        return key.flag == RECENT_FLAG
    if isinstance(key, SearchAnd):
        return any(_uses_recent(k) for k in key.keys)
    if isinstance(key, SearchOr):
        return _uses_recent(key.left) or _uses_recent(key.right)
    if isinstance(key, SearchNot):
        return _uses_recent(key.key)
    return False


def _evaluate(program: SearchAnd, context: SearchContext, views: list[_View]) -> list[_View]:
    test = compile_search(program, context)
    return [view for view in views if test(view)]


async def find_messages(
    selected: SelectedMailbox, program: SearchAnd, only: Collection[int] | None = None
) -> list[_View]:
    """The messages a program matches, in mailbox order (SEARCH, SORT and THREAD);
    ``only``: look at these UIDs alone (a live search's update, RFC 5267)."""
    if selected.rev2 and _uses_recent(program):
        # RFC 9051 has no \Recent: RECENT, NEW and OLD left the search-key grammar.
        raise CommandFailed("RECENT, NEW and OLD are not IMAP4rev2 search keys.", status="BAD")
    bridge = _Bridge(asyncio.get_running_loop())
    views = [
        _View(bridge, selected, seq, selected.rows[uid])
        for seq, uid in enumerate(selected.uids, start=1)
        if not selected.is_expunged(uid) and (only is None or uid in only)
    ]
    oracle = None
    fulltext = selected.context.fulltext
    if fulltext is not None:
        blob_of = {view.uid: view.blob_id for view in views}
        oracle = await search_oracle(fulltext, selected.account, program, blob_of)
    context = SearchContext(
        largest_uid=selected.uids[-1] if selected.uids else 0,
        largest_sequence=len(selected.uids),
        now=utcnow(),
        oracle=oracle,
        saved=selected.saved,
    )
    try:
        return await run_calling_back(_evaluate, program, context, views)
    finally:
        bridge.abandon()  # a no-op once the thread is done; cancelled, it ends the thread


def _matcher(program: SearchAnd) -> Matcher:
    """Which of some UIDs a live search's program matches now."""

    async def matches(selected: SelectedMailbox, uids: Collection[int]) -> set[int]:
        return {view.uid for view in await find_messages(selected, program, only=uids)}

    return matches


async def search(session: Session, command: Search) -> bytes:
    selected = session.mailbox
    returns = command.returns
    if returns is None and "IMAP4rev2" in session.enabled:
        returns = ()  # RFC 9051 6.4.4: rev2 answers SEARCH with ESEARCH (ALL)
    saving = returns is not None and "SAVE" in returns
    try:
        found = await find_messages(selected, command.program)
    except BaseException:
        if saving:  # RFC 5182 2.1: a SEARCH with SAVE that fails empties "$"
            selected.saved = frozenset()
        raise
    numbers = [v.uid if command.uid else v.sequence for v in found]
    modseq = max((v.modseq for v in found), default=0) if _uses_modseq(command.program) else 0
    if _uses_modseq(command.program):
        selected.condstore = True
        session.enabled.add("CONDSTORE")
    if returns is not None:
        uids = [v.uid for v in found]
        if saving:
            selected.saved = frozenset(saved_numbers(returns, uids))
        if "UPDATE" in returns:
            await start_live_search(
                session, command.tag, uids, _matcher(frozen_program(command.program, selected)),
                uid=command.uid, partial=command.partial is not None,
            )  # fmt: skip
        line = esearch_line(
            command.tag, numbers, returns, uid=command.uid, partial=command.partial, modseq=modseq
        )
        if line:
            await session.send(line)
    else:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if modseq and numbers:
            line += b" (MODSEQ %d)" % modseq
        await session.send(line + b"\r\n")
    return tagged(command.tag, "OK", "Search completed.")

"""FETCH items for one message, and the cached facts they come from.

The first time any session reads a message it is decrypted once (one EC unwrap),
streamed through :class:`MessageAnalyzer`, and the result (part map, ENVELOPE, BODY,
BODYSTRUCTURE) is sealed into ``MessageCache.extra`` together with the message key;
every later read costs no EC operation and no MIME parse. Bodies go to the socket in
pieces read by byte range, so a 50 MB ``BODY[]`` never sits in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Final, NamedTuple

from cryptmail.concurrency import run_blocking
from cryptmail.errors import BlobMissing, CryptmailError, MessageNotFound
from cryptmail.imap.message._analysis import MessageAnalysis, MessageAnalyzer, analyze_message
from cryptmail.imap.message._binary import (
    BinaryPlan,
    BinaryStream,
    BrokenEncoding,
    UnknownEncoding,
    binary_headers,
    plan_binary,
)
from cryptmail.imap.message._partmap import SectionPlan, VirtualStream, window
from cryptmail.imap.message._sections import header_section
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._preview import message_preview
from cryptmail.imap.wire._requests import (
    BinarySection,
    BodySection,
    FetchAttribute,
    FetchItem,
    Section,
)
from cryptmail.imap.wire._response import (
    Atom,
    FetchResponse,
    LiteralSlot,
    Raw,
    format_date_time,
)
from cryptmail.keys import UnlockedAccount
from cryptmail.store import (
    HEAD_SIZE,
    CachedKey,
    MessageCache,
    MessageRow,
    OpenedBlob,
    email_object_id,
    held_range_pieces,
    load_cache,
    load_caches,
    load_message,
    open_blob,
    open_small_blob,
    read_range,
    save_cache,
    save_caches,
    small_blob_plaintext,
    stream_plaintext,
)

if TYPE_CHECKING:
    from cryptmail.imap.server._selected import SelectedMailbox
    from cryptmail.imap.server._session import Session

PIECE: Final = 256 * 1024
_PARSE_OFF_LOOP: Final = 64 * 1024
_CHEAP: Final = frozenset(
    {"FLAGS", "UID", "INTERNALDATE", "MODSEQ", "SAVEDATE", "EMAILID", "THREADID"}
)
_FACTS_KEPT: Final = 4096
_JOINED: Final = 64 * 1024
INDEX_BATCH: Final = 64
"""Never-read messages indexed per blob read, worker call and transaction."""


class Facts(NamedTuple):
    """What the sealed cache holds about one message."""

    analysis: MessageAnalysis
    key: CachedKey

    def __repr__(self) -> str:
        return f"Facts(size={self.analysis.rfc822_size})"


async def open_current(
    selected: SelectedMailbox,
    row: MessageRow,
    key: CachedKey | None = None,
    head: bytes | None = None,
    *,
    whole: bool = False,
) -> tuple[MessageRow, OpenedBlob]:
    """Open the row's blob; if it is gone, re-read the row once and open its new blob.

    `cryptmail mailbox encrypt` gives a row a new blob and deletes the old one, so a
    session that loaded the row before holds a blob id that no longer exists.
    """
    blobs, account = selected.context.blobs, selected.account
    try:
        opened = await open_blob(
            blobs,
            account,
            row.blob_id,
            message_key=key.message_key if key else None,
            payload_key=key.payload_key if key else None,
            expect_sealed=row.sealed,
            head=head,
            whole=whole,
        )
    except BlobMissing:
        async with selected.context.engine.connect() as conn:
            fresh = await load_message(conn, account, row.id)
        if fresh is None:  # another session expunged it and dropped its blob
            raise MessageNotFound("the message was expunged by another session") from None
        if fresh.blob_id == row.blob_id:
            raise
        row = row._replace(blob_id=fresh.blob_id, sealed=fresh.sealed)
        selected.replace_blob(row.uid, row.blob_id, row.sealed)
        opened = await open_blob(blobs, account, row.blob_id, expect_sealed=row.sealed)
    return row, opened


async def _index(selected: SelectedMailbox, row: MessageRow) -> Facts:
    context = selected.context
    row, opened = await open_current(selected, row)
    if context.fulltext is not None:  # its first read: the search index takes it next
        context.fulltext.hurry(selected.account, {row.blob_id})
    analyzer = MessageAnalyzer()
    size = 0
    async for piece in stream_plaintext(context.blobs, opened):
        size += len(piece)
        if len(piece) >= _PARSE_OFF_LOOP:
            await run_blocking(analyzer.feed, piece)
        else:
            analyzer.feed(piece)
    analysis = await run_blocking(analyzer.finish)
    cache = MessageCache(size, None, analysis.to_bytes(), opened.payload_key)
    async with context.engine.begin() as conn:
        await save_cache(conn, selected.account, row, cache, initial_flags=selected.initial_flags)
    return Facts(analysis, opened.key)


def _analyze_small(
    account: UnlockedAccount, blobs: list[tuple[MessageRow, bytes]]
) -> list[tuple[MessageRow, Facts, int]]:
    # One worker-thread call for a batch: unwrap, decrypt and analyse each small message.
    # One that fails is left out; indexed alone later, it reports what is wrong.
    done = []
    for row, contents in blobs:
        try:
            opened = open_small_blob(contents, account, row.blob_id, expect_sealed=row.sealed)
            message = small_blob_plaintext(opened)
        except CryptmailError:
            continue
        analysis = analyze_message(message, with_preview=True)  # RFC 8970, at first read
        done.append((row, Facts(analysis, opened.key), len(message)))
    return done


async def index_messages(selected: SelectedMailbox, rows: list[MessageRow]) -> None:
    """Index never-read messages in batches of INDEX_BATCH: the blobs read in one round
    trip, the small ones unwrapped and analysed in one worker call, their caches saved in
    one transaction. A big or unreadable message is indexed alone (`load_facts`), whose
    error, if any, is raised for the first such message after the others are done."""
    context, account = selected.context, selected.account
    failure: CryptmailError | None = None
    for start in range(0, len(rows), INDEX_BATCH):
        batch = [row for row in rows[start : start + INDEX_BATCH] if row.id not in selected.facts]
        heads = await context.blobs.read_heads([row.blob_id for row in batch], HEAD_SIZE)
        small = []
        for row in batch:
            head = heads.get(row.blob_id)
            if head is not None and len(head) < HEAD_SIZE:
                small.append((row, head))
        indexed = await run_blocking(_analyze_small, account, small)
        if indexed:
            caches = [
                (row, MessageCache(size, None, facts.analysis.to_bytes(), facts.key.payload_key))
                for row, facts, size in indexed
            ]
            await save_caches(context.engine, account, caches, initial_flags=selected.initial_flags)
        for row, facts, _size in indexed:
            _keep(selected, row, facts)
        done = {row.id for row, _facts, _size in indexed}
        for row in batch:
            if row.id in done:
                continue
            try:
                await load_facts(selected, row)
            except CryptmailError as exc:
                failure = failure or exc
    if failure is not None:
        raise failure


def _keep(selected: SelectedMailbox, row: MessageRow, facts: Facts) -> None:
    selected.facts[row.id] = facts
    while len(selected.facts) > _FACTS_KEPT:
        selected.facts.popitem(last=False)


async def load_facts(selected: SelectedMailbox, row: MessageRow) -> Facts:
    """The message's facts: from memory, the sealed cache, or by indexing it once."""
    found = selected.facts.get(row.id)
    if found is not None:
        selected.facts.move_to_end(row.id)
        return found
    facts: Facts | None = None
    async with selected.context.engine.connect() as conn:
        cache = await load_cache(conn, selected.account, row.id)
    if cache is not None and cache.extra:
        try:
            facts = Facts(MessageAnalysis.from_bytes(cache.extra), cache.key)
        except ValueError:
            facts = None
    if facts is None:
        facts = await _index(selected, row)
    _keep(selected, row, facts)
    return facts


async def prefetch_facts(selected: SelectedMailbox, rows: list[MessageRow]) -> None:
    """Load the cached facts of many messages in a few queries instead of one each.

    Only as many as the in-memory cache keeps; the rest load one by one as they come.
    """
    missing = [row.id for row in rows[:_FACTS_KEPT] if row.id not in selected.facts]
    if not missing:
        return
    async with selected.context.engine.connect() as conn:
        caches = await load_caches(conn, selected.account, missing)
    for row_id, cache in caches.items():
        if not cache.extra:
            continue
        try:
            facts = Facts(MessageAnalysis.from_bytes(cache.extra), cache.key)
        except ValueError:
            continue
        selected.facts[row_id] = facts
    while len(selected.facts) > _FACTS_KEPT:
        selected.facts.popitem(last=False)
    never_read = [row for row in rows[:_FACTS_KEPT] if row.id not in selected.facts]
    if len(never_read) > 1:
        try:
            await index_messages(selected, never_read)
        except CryptmailError:
            pass  # the FETCH reads each failed message again and reports it


def sets_seen(item: FetchItem) -> bool:
    if isinstance(item, (BodySection, BinarySection)):
        return not item.peek
    return item.name in ("RFC822", "RFC822.TEXT")


def needs_facts(items: tuple[FetchItem, ...]) -> bool:
    return any(not isinstance(i, FetchAttribute) or i.name not in _CHEAP for i in items)


_RFC822_SECTIONS: Final = {
    "RFC822": Section(),
    "RFC822.HEADER": Section(text="HEADER"),
    "RFC822.TEXT": Section(text="TEXT"),
}


class _BinarySlot(NamedTuple):
    """A BINARY answer too big to hold: sent by a second pass over its segments."""

    plan: BinaryPlan
    skip: int
    size: int


_UNKNOWN_CTE: Final = "[UNKNOWN-CTE]"


class MessageFetch:
    """Builds and writes one ``* n FETCH`` response."""

    def __init__(
        self,
        session: Session,
        selected: SelectedMailbox,
        seq: int,
        uid: int,
        *,
        head: bytes | None = None,
        whole: bool = False,
    ) -> None:
        self._session = session
        self._head = head
        self._whole = whole
        self._selected = selected
        self._row = selected.rows[uid]
        self._uid = uid
        self._response = FetchResponse(seq)
        self._plans: deque[SectionPlan | _BinarySlot] = deque()
        # BINARY answers counted so far: part -> (plan, size, literal8, bytes if small).
        self._binary: dict[tuple[int, ...], tuple[BinaryPlan | None, int, bool, bytes | None]]
        self._binary = {}
        self._facts: Facts | None = None
        self._opened: OpenedBlob | None = None

    async def _open(self) -> OpenedBlob:
        if self._opened is None:
            key = self._facts.key if self._facts else None
            self._row, self._opened = await open_current(
                self._selected, self._row, key, self._head, whole=self._whole
            )
            self._head = None
        return self._opened

    async def opened_blob(self) -> tuple[MessageRow, OpenedBlob]:
        """The message's current row and its opened blob (URLAUTH grants its key)."""
        opened = await self._open()
        return self._row, opened

    async def build(self, items: tuple[FetchItem, ...], *, with_modseq: bool) -> None:
        if needs_facts(items):
            self._facts = await load_facts(self._selected, self._row)
        names = {i.name for i in items if isinstance(i, FetchAttribute)}
        for item in items:
            if isinstance(item, BodySection):
                await self._section(item.response_key(), item.section, item.partial)
            elif isinstance(item, BinarySection):
                await self._binary_item(item)
            else:
                await self._attribute(item.name)
        if with_modseq and "MODSEQ" not in names:
            await self._attribute("MODSEQ")

    async def _attribute(self, name: str) -> None:
        response, row = self._response, self._row
        if name == "UID":
            response.add("UID", self._uid)
        elif name == "FLAGS":
            response.add("FLAGS", self._selected.flags_of(self._uid))
        elif name == "INTERNALDATE":
            response.add("INTERNALDATE", Raw(format_date_time(row.internal_date)))
        elif name == "MODSEQ":
            response.add("MODSEQ", [row.modseq])
        elif name == "SAVEDATE":  # RFC 8514; NIL for a row saved before it was recorded
            saved = row.saved_at
            response.add(name, None if saved is None else Raw(format_date_time(saved)))
        elif name == "EMAILID":  # RFC 8474
            response.add(name, [Atom(email_object_id(self._selected.account, row.blob_id))])
        elif name == "THREADID":  # RFC 8474 5.2: NIL, the server does not thread
            response.add(name, None)
        elif name in _RFC822_SECTIONS:
            await self._section(name, _RFC822_SECTIONS[name], None)
        else:
            assert self._facts is not None  # noqa: S101 - needs_facts() loaded them
            analysis = self._facts.analysis
            if name == "RFC822.SIZE":
                response.add(name, analysis.rfc822_size)
            elif name == "ENVELOPE":
                response.add(name, Raw(analysis.envelope))
            elif name == "BODY":
                response.add(name, Raw(analysis.body_for(self._selected.rev2)))
            elif name == "BODYSTRUCTURE":
                response.add(name, Raw(analysis.bodystructure_for(self._selected.rev2)))
            elif name in ("PREVIEW", "PREVIEW.LAZY"):  # RFC 8970
                text = await message_preview(
                    self._selected, row, self._facts, self._open, lazy=name == "PREVIEW.LAZY"
                )
                response.add("PREVIEW", text)

    async def _section(self, key: str, section: Section, partial: tuple[int, int] | None) -> None:
        assert self._facts is not None  # noqa: S101 - needs_facts() loaded them
        plan = self._facts.analysis.part_map.plan(section, partial, rev2=self._selected.rev2)
        if not plan.found:
            self._response.add_literal(key, b"")
            return
        if plan.header_fields is not None:
            opened = await self._open()
            header = await read_range(
                self._selected.context.blobs, opened, plan.offset, plan.length
            )
            self._response.add_literal(key, header_section(header, plan, partial))
            return
        size = plan.size or 0
        if size <= 4096 or size <= _JOINED and (await self._open()).contents is not None:
            self._response.add_literal(key, await self._collect(plan))
            return
        self._plans.append(plan)
        self._response.add_streamed(key, size)

    async def section_plan(self, section: Section, partial: tuple[int, int] | None) -> SectionPlan:
        """Plan ``BODY.PEEK[section]<partial>`` of this message (CATENATE's URL parts)."""
        self._facts = await load_facts(self._selected, self._row)
        return self._facts.analysis.part_map.plan(section, partial, rev2=self._selected.rev2)

    async def section_pieces(
        self, plan: SectionPlan, partial: tuple[int, int] | None
    ) -> AsyncIterator[bytes]:
        """The bytes FETCH would send for `plan` (from :meth:`section_plan`), in pieces."""
        if not plan.found:
            return
        if plan.header_fields is not None:
            opened = await self._open()
            header = await read_range(
                self._selected.context.blobs, opened, plan.offset, plan.length
            )
            yield header_section(header, plan, partial)
            return
        async for piece in self._stream(plan):
            yield piece

    async def _binary_item(self, item: BinarySection) -> None:
        """BINARY, BINARY.PEEK, BINARY.SIZE (RFC 3516): counted by a first pass over the
        decoded part (kept when small); a big answer is decoded again as it is sent."""
        found = self._binary.get(item.part)
        if found is None:
            found = await self._count_binary(item.part)
            self._binary[item.part] = found
        plan, total, literal8, kept = found
        key = item.response_key()
        if item.size_only:
            self._response.add(key, total)
            return
        skip, size = window(total, item.partial)
        if plan is None or kept is not None:
            data = kept[skip : skip + size] if kept is not None else b""
            self._response.add_literal(key, data, literal8=literal8)
            return
        self._plans.append(_BinarySlot(plan, skip, size))
        self._response.add_streamed(key, size, literal8=literal8)

    async def _count_binary(
        self, part: tuple[int, ...]
    ) -> tuple[BinaryPlan | None, int, bool, bytes | None]:
        assert self._facts is not None  # noqa: S101 - needs_facts() loaded them
        part_map = self._facts.analysis.part_map
        wanted = binary_headers(part_map, part, self._selected.rev2)
        headers = {}
        if wanted:
            opened = await self._open()
            blobs = self._selected.context.blobs
            for index in wanted:
                entry = part_map.parts[index]
                headers[index] = await read_range(
                    blobs, opened, entry.header_offset, entry.header_size
                )
        try:
            plan = plan_binary(part_map, part, headers, self._selected.rev2)
            if plan is None:
                return None, 0, False, b""
            stream = BinaryStream()
            kept: bytearray | None = bytearray()
            async for out in self._binary_output(plan, stream):
                if kept is not None:
                    kept += out
                    if len(kept) > _JOINED:
                        kept = None
        except UnknownEncoding:
            raise CommandFailed("Unknown Content-Transfer-Encoding.", _UNKNOWN_CTE) from None
        except BrokenEncoding:
            raise CommandFailed(
                "The part is not valid in its Content-Transfer-Encoding.", _UNKNOWN_CTE
            ) from None
        # As Dovecot: a literal8 when anything was decoded (and came out) or holds NUL.
        literal8 = (plan.decoded and stream.total > 0) or stream.has_nul
        return plan, stream.total, literal8, bytes(kept) if kept is not None else None

    async def _binary_output(
        self, plan: BinaryPlan, stream: BinaryStream
    ) -> AsyncGenerator[bytes, None]:
        opened = await self._open()
        blobs = self._selected.context.blobs
        for segment in plan.segments:
            out = stream.begin(segment)
            if out:
                yield out
            pos, end = segment.offset, segment.offset + segment.length
            while pos < end:
                data = await read_range(blobs, opened, pos, min(PIECE - pos % PIECE, end - pos))
                if not data:
                    break
                pos += len(data)
                out = stream.feed(data)
                if out:
                    yield out
            out = stream.end()
            if out:
                yield out

    async def _binary_stream(self, slot: _BinarySlot) -> AsyncIterator[bytes]:
        left = slot.size
        output = self._binary_output(slot.plan, BinaryStream(slot.skip, slot.size))
        try:
            async for out in output:
                left -= len(out)
                yield out
                if left <= 0:
                    break  # the window is complete: the rest need not be decoded
        except BrokenEncoding:  # cannot happen (the count pass read the same bytes)
            pass
        finally:
            await output.aclose()
        if left > 0:  # keep the literal's announced size
            yield b" " * left

    async def _collect(self, plan: SectionPlan) -> bytes:
        size = plan.size or 0
        if size == 0:
            return b""
        opened = await self._open()
        if opened.contents is not None:  # the whole blob is in memory: one decryption
            blobs = self._selected.context.blobs
            if plan.needs_conversion:
                stored = await read_range(blobs, opened, plan.offset, plan.length)
                data = VirtualStream.for_plan(plan).feed(stored)
            else:
                data = _no_nul(await read_range(blobs, opened, plan.offset + plan.skip, size))
            return data + b" " * (size - len(data))  # as _stream pads a short message
        out = bytearray()
        async for piece in self._stream(plan):
            out += piece
        return bytes(out)

    async def _stream(self, plan: SectionPlan) -> AsyncIterator[bytes]:
        size = plan.size or 0
        if size == 0:
            return
        opened = await self._open()
        blobs = self._selected.context.blobs
        if not plan.needs_conversion and opened.contents is not None:
            # Held whole (the read-ahead's batches): its chunks as they decrypt, no join.
            for piece in held_range_pieces(opened, plan.offset + plan.skip, size):
                out = _no_nul(piece[:size])
                size -= len(out)
                yield out
            if size > 0:  # the stored message is shorter than its map says
                yield b" " * size
            return
        if not plan.needs_conversion:
            pos, left = plan.offset + plan.skip, size
            converter: VirtualStream | None = None
            end = pos + left
        else:
            pos, left = plan.offset, size
            converter = VirtualStream.for_plan(plan)
            end = plan.offset + plan.length
        while left > 0 and pos < end:
            step = min(PIECE - pos % PIECE, end - pos)
            data = await read_range(blobs, opened, pos, step)
            if not data:
                break
            pos += len(data)
            out = converter.feed(data) if converter is not None else _no_nul(data[:left])
            left -= len(out)
            if out:
                yield out
        if left > 0:  # the stored message is shorter than its map says: keep the syntax
            yield b" " * left

    async def write(self, out: bytearray) -> None:
        """Add the response to `out`, which the caller sends when the command ends.

        Small literals join the surrounding text, and the responses of many small
        messages join each other, so a socket write carries up to _JOINED bytes; big
        literals stream piece by piece, waiting for the client.
        """
        for piece in self._response.pieces():
            if not isinstance(piece, LiteralSlot):
                out += piece
                continue
            plan = self._plans.popleft()
            small = (plan.size or 0) <= _JOINED
            pieces = (
                self._binary_stream(plan) if isinstance(plan, _BinarySlot) else self._stream(plan)
            )
            async for data in pieces:
                if small:
                    out += data
                    continue
                # A big literal's pieces go to the socket as they are, not through `out`:
                # two copies of every byte saved. `send` waits for the client once the
                # transport holds more than a read's worth, which bounds the memory.
                if out:
                    await self._session.send(bytes(out))
                    out.clear()
                await self._session.send(data)
        if len(out) >= _JOINED:
            await self._session.send(bytes(out))
            out.clear()


def _no_nul(data: bytes) -> bytes:
    """NUL as 0x80, one byte for one, as VirtualStream does where lines are converted:
    RFC 3501 allows no NUL in a literal (only BINARY may carry one), and every size
    already reported stays true."""
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


def reads_blob(items: tuple[FetchItem, ...]) -> bool:
    """Whether the items need the message's bytes, not only its cached facts."""
    return any(
        isinstance(i, (BodySection, BinarySection)) or i.name in _RFC822_SECTIONS for i in items
    )

"""FETCH and UID FETCH, with CONDSTORE's CHANGEDSINCE and QRESYNC's VANISHED.

Each message's response is built first (facts loaded from the sealed cache, indexing
the message once if nobody has) and then written, bodies streamed piece by piece.
A message that cannot be read is left out and the command ends in NO; a message that
fails verification in the middle of its literal ends the connection, since the
literal's announced size can no longer be honoured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cryptmail.errors import BlobMissing, DecryptionFailed, MessageNotFound, ObjectTampered
from cryptmail.imap.server._errors import CommandFailed, ConnectionClosed
from cryptmail.imap.server._fetch import (
    MessageFetch,
    needs_facts,
    prefetch_facts,
    reads_blob,
    sets_seen,
)
from cryptmail.imap.server._readahead import HeadReadAhead
from cryptmail.imap.server._selected import InvalidSequence, SelectedMailbox
from cryptmail.imap.wire._requests import Fetch, FetchAttribute, FetchItem
from cryptmail.imap.wire._response import tagged
from cryptmail.imap.wire._sequence import format_number_runs
from cryptmail.store import RECENT_FLAG, change_flags, load_message, vanished_since

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

log = logging.getLogger(__name__)

_UNREADABLE = (ObjectTampered, BlobMissing, DecryptionFailed)


async def fetch(session: Session, command: Fetch) -> bytes:
    selected = session.mailbox
    try:
        targets = selected.resolve(command.sequence, uid=command.uid)
    except InvalidSequence:
        raise CommandFailed("Invalid message sequence number.", status="BAD") from None
    items: tuple[FetchItem, ...] = command.items
    if command.uid and FetchAttribute("UID") not in items:
        items = (FetchAttribute("UID"), *items)
    with_modseq = command.changed_since is not None
    if command.changed_since is not None:
        selected.condstore = True
        session.enabled.add("CONDSTORE")
        since = command.changed_since
        targets = [(s, u) for s, u in targets if selected.rows[u].modseq > since]
        if command.vanished:
            if not command.uid or not selected.qresync:
                raise CommandFailed("VANISHED needs UID FETCH and QRESYNC.", status="BAD")
            async with session.context.engine.connect() as conn:
                gone = await vanished_since(conn, selected.mailbox_id, since)
            wanted = (
                selected.uid_set(command.sequence)
                if command.sequence.saved
                else command.sequence.resolve(max(selected.uidnext - 1, 1))
            )
            gone = [uid for uid in gone if uid in wanted]
            if gone:
                runs = format_number_runs(sorted(set(gone)))
                await session.send(b"* VANISHED (EARLIER) " + runs.encode() + b"\r\n")
    if (
        selected.condstore
        and FetchAttribute("MODSEQ") not in items
        and any(i == FetchAttribute("FLAGS") for i in items)
    ):
        with_modseq = True
    targets = [(s, u) for s, u in targets if not selected.is_expunged(u)]
    seen_items = any(sets_seen(i) for i in items)
    newly_seen: set[int] = set()
    if seen_items and not selected.read_only:
        unseen = {
            selected.rows[uid].id: uid
            for _seq, uid in targets
            if "\\Seen" not in selected.rows[uid].flags
        }
        if unseen:
            # Added to the stored flags, not to this session's (maybe stale) copy.
            done = await change_flags(
                session.context.engine,
                selected.account,
                selected.mailbox_id,
                list(unseen),
                "add",
                frozenset({"\\Seen"}),
            )
            for row_id, flags in done.changed.items():
                newly_seen.add(unseen[row_id])
                selected.update_flags(unseen[row_id], flags - {RECENT_FLAG}, done.modseq)
            if done.changed:
                selected.note_own_modseq(done.modseq)
                session.context.bus.publish(selected.account.user.id, selected.mailbox_id)
    if len(targets) > 1 and needs_facts(items):
        await prefetch_facts(selected, [selected.rows[uid] for _seq, uid in targets])
    failed = expunged = False
    heads: HeadReadAhead | None = None
    if len(targets) > 1 and reads_blob(items):
        rows = [selected.rows[uid] for _seq, uid in targets]
        heads = HeadReadAhead(
            selected.context.blobs,
            [row.blob_id for row in rows],
            [row.size_rounded for row in rows],
        )
    out = bytearray()
    try:
        for position, (seq, uid) in enumerate(targets):
            message_items = items
            if uid in newly_seen and FetchAttribute("FLAGS") not in items:
                message_items = (*items, FetchAttribute("FLAGS"))
            head = await heads.head(position) if heads is not None else None
            whole = head is not None and heads is not None and heads.whole(position, head)
            response = MessageFetch(session, selected, seq, uid, head=head, whole=whole)
            try:
                await response.build(message_items, with_modseq=with_modseq)
            except MessageNotFound:  # another session expunged it: no corruption
                expunged = True
                continue
            except _UNREADABLE as exc:
                if isinstance(exc, BlobMissing) and await _expunged_meanwhile(selected, uid):
                    # Its blob went with its row, on a path other than `open_current`'s
                    # (facts of a message never read, a cached analysis): no corruption.
                    expunged = True
                    continue
                log.error("IMAP FETCH: %s", exc)
                failed = True
                continue
            try:
                await response.write(out)
            except _UNREADABLE as exc:
                log.error("IMAP FETCH, mid-literal: %s", exc)
                raise ConnectionClosed("a message failed verification while being sent") from exc
    except ConnectionClosed:
        raise
    except Exception:
        if out:  # the responses built so far still go out before the command's error
            await session.send(bytes(out))
        raise
    finally:
        if heads is not None:
            heads.close()
    if out:
        await session.send(bytes(out))
    if expunged and not failed:
        return tagged(command.tag, "NO", "Some messages were expunged.", "[EXPUNGEISSUED]")
    if failed:
        return tagged(
            command.tag, "NO", "Some messages could not be read; the operator was told.",
            "[CORRUPTION]",
        )  # fmt: skip
    return tagged(command.tag, "OK", "Fetch completed.")


async def _expunged_meanwhile(selected: SelectedMailbox, uid: int) -> bool:
    """Whether the row of `uid` is gone: another session expunged it after this one
    loaded the mailbox, and deleted its blob with it."""
    row = selected.rows.get(uid)
    if row is None:
        return True
    async with selected.context.engine.connect() as conn:
        return await load_message(conn, selected.account, row.id) is None

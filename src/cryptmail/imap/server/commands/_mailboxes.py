"""Mailbox commands: SELECT, EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
LSUB, NAMESPACE, STATUS, CHECK, CLOSE, UNSELECT.

Folder names are secret at rest; they exist in clear only in this session's memory
and on the wire, never in a log line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import run_async_transaction
from cryptmail.errors import MailboxExists, MailboxNotFound, StoreError
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server.commands._store import expunge_deleted
from cryptmail.imap.wire._requests import (
    Check,
    Close,
    Create,
    Delete,
    Examine,
    List,
    Lsub,
    Namespace,
    Rename,
    Select,
    Status,
    Subscribe,
    UndecodableName,
    Unselect,
    Unsubscribe,
)
from cryptmail.imap.wire._response import Atom, ImapValue, append_astring, tagged, untagged
from cryptmail.imap.wire._sequence import format_number_runs
from cryptmail.imap.wire._wildcard import ListPattern
from cryptmail.store import (
    DELIMITER,
    BlobId,
    Mailbox,
    MailboxId,
    create_mailbox,
    delete_mailbox,
    find_mailbox,
    get_mailbox,
    list_mailboxes,
    list_subscriptions,
    mailbox_listing,
    mailbox_object_id,
    mailbox_state,
    normal_name,
    rename_inbox,
    rename_mailbox,
    unreferenced_blobs,
    vanished_since,
)
from cryptmail.store import subscribe as store_subscribe
from cryptmail.store import unsubscribe as store_unsubscribe
from cryptmail.utf7 import encode_mailbox_name

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session
    from cryptmail.keys import UnlockedAccount


def _refuse_new_name(name: str) -> None:
    """A name to be created must decode; Dovecot answers the same NO."""
    if isinstance(name, UndecodableName):
        raise CommandFailed("Mailbox name is not valid mUTF-7.")


def _refuse_undecodable(name: str) -> None:
    """A name that does not decode names no mailbox (NO, not BAD: it is data)."""
    if isinstance(name, UndecodableName):
        raise MailboxNotFound("the mailbox name is not valid modified UTF-7")


def wire_name(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as a response writes it: INBOX, else modified UTF-7 as an astring;
    with ``utf8`` (UTF8=ACCEPT enabled, RFC 6855) UTF-8 in a quoted string."""
    out = bytearray()
    if name.upper() == "INBOX":
        append_astring(out, "INBOX")
    elif utf8 and not name.isascii():
        out += b'"' + name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'
    else:
        append_astring(out, name if utf8 else encode_mailbox_name(name))
    return bytes(out)


def utf8_names(session: Session) -> bool:
    """Whether the client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 9051 5.1): names go out
    as UTF-8, not mUTF-7."""
    return not session.enabled.isdisjoint(("UTF8=ACCEPT", "IMAP4rev2"))


async def _mailboxes_changed(session: Session) -> None:
    """After CREATE, DELETE, RENAME, (UN)SUBSCRIBE: this session's NOTIFY takes the
    change silently (RFC 5465 5: a client is not told of its own changes), the user's
    other sessions on this node hear of it at once (mailbox id 0: the list changed)."""
    if session.notify is not None:
        await session.notify.own_change()
    session.context.bus.publish(session.user_account.user.id, MailboxId(0))


async def _select(session: Session, command: Select | Examine, read_only: bool) -> bytes:
    account = session.user_account
    if session.selected is not None:
        session.selected.close()
        session.selected = None
        session.state = "auth"
        await session.send(b"* OK [CLOSED] Previous mailbox closed.\r\n")
    box = await find_mailbox(session.context.engine, account, command.mailbox)
    selected = SelectedMailbox(session.context, account, box, read_only=read_only)
    await selected.load()
    if command.condstore or command.qresync is not None:
        session.enabled.add("CONDSTORE")
    if command.qresync is not None and "QRESYNC" not in session.enabled:
        raise CommandFailed("QRESYNC is not enabled.", status="BAD")
    selected.condstore = "CONDSTORE" in session.enabled
    selected.qresync = "QRESYNC" in session.enabled
    selected.rev2 = "IMAP4rev2" in session.enabled
    # One socket write for all of them instead of one each.
    lines = [selected.flags_responses(), untagged(selected.exists, Atom("EXISTS"))]
    if selected.rev2:
        # RFC 9051 6.3.2: a LIST response names the mailbox (with OLDNAME, the name as
        # supplied, when that is not in normal form: a MUST); no RECENT, no UNSEEN code.
        name = normal_name(box.name)
        if normal_name(command.mailbox) != command.mailbox:
            lines.append(_oldname_line(name, command.mailbox))
        else:
            lines.append(b'* LIST () "/" ' + wire_name(name, True) + b"\r\n")
    else:
        lines.append(untagged(len(selected.recent), Atom("RECENT")))
    if selected.first_unseen_uid is not None and not selected.rev2:
        first_unseen = selected.sequence_of(selected.first_unseen_uid)
        lines.append(b"* OK [UNSEEN %d] First unseen.\r\n" % first_unseen)
    lines += [
        b"* OK [UIDVALIDITY %d] UIDs valid.\r\n" % selected.uidvalidity,
        b"* OK [UIDNEXT %d] Predicted next UID.\r\n" % selected.uidnext,
        b"* OK [HIGHESTMODSEQ %d] Highest.\r\n" % selected.highest_modseq,
        b"* OK [MAILBOXID (%s)] Ok.\r\n" % mailbox_object_id(account, box.id).encode(),
        b"* OK [URLMECH INTERNAL] URLAUTH mechanisms.\r\n",  # RFC 4467 section 7.1
    ]
    session.selected = selected
    session.state = "selected"
    code = "[READ-ONLY]" if read_only else "[READ-WRITE]"
    done = tagged(command.tag, "OK", "Select completed.", code)
    qresync = command.qresync
    if qresync is None or qresync.uidvalidity != selected.uidvalidity:
        # One socket write for the untagged lines and the tagged reply (a write is a
        # system call and a wake-up of the client): the session's refresh after the
        # command has nothing to send straight after the load (see `refresh`).
        return b"".join(lines) + done
    await session.send(b"".join(lines))
    async with session.context.engine.connect() as conn:
        gone = await vanished_since(conn, selected.mailbox_id, qresync.modseq)
    if qresync.known_uids is not None:
        known = qresync.known_uids.resolve(max(selected.uidnext, 1))
        gone = [uid for uid in gone if uid in known]
    if gone:
        runs = format_number_runs(sorted(set(gone)))
        await session.send(b"* VANISHED (EARLIER) " + runs.encode() + b"\r\n")
    for uid in selected.uids:
        if selected.rows[uid].modseq > qresync.modseq:
            await session.send(selected.flags_response(uid))
    return done


async def select(session: Session, command: Select) -> bytes:
    return await _select(session, command, False)


async def examine(session: Session, command: Examine) -> bytes:
    return await _select(session, command, True)


async def create(session: Session, command: Create) -> bytes:
    account = session.user_account
    _refuse_new_name(command.mailbox)
    given = command.mailbox.rstrip(DELIMITER)
    name = normal_name(given)
    if command.special_use:
        raise CommandFailed("Special-use folders are fixed.", "[USEATTR]")

    async def work(conn: AsyncConnection) -> Mailbox | None:
        boxes = await list_mailboxes(conn, account.user.id, account)
        existing = {normal_name(b.name) for b in boxes}
        if name in existing or name.upper() == "INBOX":
            raise MailboxExists("that mailbox exists already")
        levels = name.split(DELIMITER)
        created = None
        for depth in range(1, len(levels) + 1):
            path = DELIMITER.join(levels[:depth])
            if path not in existing:
                created = await create_mailbox(conn, account, path)
        return created

    created = await run_async_transaction(session.context.engine, work, retry=True)
    code = None
    if created is not None:  # RFC 8474 4.1: the new mailbox's MAILBOXID
        code = f"[MAILBOXID ({mailbox_object_id(account, created.id)})]"
    await _mailboxes_changed(session)
    if given != name:
        await _tell_normalised(session, name, given)
    return tagged(command.tag, "OK", "Create completed.", code)


def _oldname_line(name: str, oldname: str, attributes: bytes = b"()") -> bytes:
    """An untagged LIST of `name` with the OLDNAME extended data item (RFC 9051 6.3.9.7,
    `oldname-extended-item = "OLDNAME" SP "(" mailbox ")"`), in UTF-8."""
    return (
        b"* LIST " + attributes + b' "/" ' + wire_name(name, True)
        + b' ("OLDNAME" (' + wire_name(oldname, True) + b"))\r\n"
    )  # fmt: skip


async def _tell_normalised(
    session: Session, name: str, oldname: str, attributes: bytes = b"()"
) -> None:
    """RFC 9051 6.3.4 to 6.3.6: where the server normalised a name it was given (to NFC,
    see `normal_name`), it tells the client so with a LIST of the normalised name and
    OLDNAME: the name as supplied. Only to a session that speaks UTF-8 names: IMAP4rev1
    in modified UTF-7 has no OLDNAME, and the two forms are the client's own business."""
    if utf8_names(session):
        await session.send(_oldname_line(name, oldname, attributes))


async def _drop_blobs(session: Session, blob_ids: Iterable[BlobId]) -> None:
    async with session.context.engine.connect() as conn:
        unused = await unreferenced_blobs(conn, blob_ids)
    for blob_id in unused:
        await session.context.blobs.delete(blob_id)


async def delete(session: Session, command: Delete) -> bytes:
    account = session.user_account
    given = command.mailbox

    async def work(conn: AsyncConnection) -> tuple[Mailbox, list[BlobId]]:
        box = await get_mailbox(conn, account, command.mailbox)
        if box.role is not None:
            raise CommandFailed("Special folders cannot be deleted.", "[CANNOT]")
        return box, await delete_mailbox(conn, account, command.mailbox)

    box, blob_ids = await run_async_transaction(session.context.engine, work, retry=True)
    if session.selected is not None and session.selected.mailbox_id == box.id:
        session.selected.close()
        session.selected = None
        session.state = "auth"
    await _mailboxes_changed(session)
    await _drop_blobs(session, blob_ids)
    if normal_name(given) != given:
        # RFC 9051 6.3.5: the deleted name, normalised, as \NonExistent with OLDNAME.
        await _tell_normalised(session, normal_name(given), given, b"(\\NonExistent)")
    return tagged(command.tag, "OK", "Delete completed.")


async def rename(session: Session, command: Rename) -> bytes:
    account = session.user_account
    given = command.new_name.rstrip(DELIMITER)
    new_name = normal_name(given)

    async def work(conn: AsyncConnection) -> Mailbox:
        source = await get_mailbox(conn, account, command.mailbox)
        _refuse_new_name(command.new_name)
        if source.role == "inbox":
            await rename_inbox(conn, account, new_name)
        elif source.role is not None:
            raise CommandFailed("Special folders cannot be renamed.", "[CANNOT]")
        elif new_name == normal_name(source.name):
            raise MailboxExists("a mailbox cannot be renamed to its own name")
        elif new_name.startswith(normal_name(source.name) + DELIMITER):
            # Its children would land on their own names (Dovecot refuses the same way).
            raise CommandFailed("Can't rename mailbox under itself.")
        else:
            renamed = await rename_mailbox(conn, account, command.mailbox, new_name)
            await _carry_subscriptions(conn, account, renamed)
        # RFC 3501 6.3.5: superior levels of the new name are created if missing.
        boxes = await list_mailboxes(conn, account.user.id, account)
        existing = {normal_name(b.name) for b in boxes}
        for parent in _ancestors(new_name):
            if parent not in existing and parent.upper() != "INBOX":
                await create_mailbox(conn, account, parent)
        return source

    source = await run_async_transaction(session.context.engine, work, retry=True)
    if source.role == "inbox":
        session.context.bus.publish(account.user.id, source.id)
    await _mailboxes_changed(session)
    # RFC 9051 6.3.6: when either name given is not in normal form, the new name
    # normalised with OLDNAME the existing name as supplied (for the client to match
    # the name it gave with the one stored).
    old_given = command.mailbox
    if given != new_name or normal_name(old_given) != old_given:
        await _tell_normalised(session, new_name, old_given)
    return tagged(command.tag, "OK", "Rename completed.")


async def _carry_subscriptions(
    conn: AsyncConnection, account: UnlockedAccount, renamed: list[tuple[str, str]]
) -> None:
    """A renamed folder, and each child renamed with it, stays subscribed under its new
    name and no longer under the old one (as Cyrus does; Dovecot 2.3 leaves the
    subscription with the old name, where a client then shows a folder that is gone).
    Only the folders renamed: a subscribed name below them that names no folder is the
    user's to keep (RFC 3501 6.3.6). In the rename's transaction: a crash leaves the old
    names and subscriptions or the new ones. A subscription stored in another normal
    form is found too (`list_subscriptions` merges it into NFC first)."""
    subscribed = await list_subscriptions(conn, account)
    moved = [(old, new) for old, new in renamed if normal_name(old) in subscribed]
    for _old, new in moved:  # the new names first: nothing is unsubscribed before
        await store_subscribe(conn, account, new)
    new_names = {new for _old, new in moved}
    for old, _new in moved:
        if normal_name(old) not in new_names:
            await store_unsubscribe(conn, account, old)


async def subscribe(session: Session, command: Subscribe) -> bytes:
    _refuse_undecodable(command.mailbox)
    name = command.mailbox.rstrip(DELIMITER)

    async def work(conn: AsyncConnection) -> None:
        await store_subscribe(conn, session.user_account, name)

    await run_async_transaction(session.context.engine, work, retry=True)
    await _mailboxes_changed(session)
    return tagged(command.tag, "OK", "Subscribe completed.")


async def unsubscribe(session: Session, command: Unsubscribe) -> bytes:
    _refuse_undecodable(command.mailbox)
    name = command.mailbox.rstrip(DELIMITER)

    async def work(conn: AsyncConnection) -> bool:
        return await store_unsubscribe(conn, session.user_account, name)

    found = await run_async_transaction(session.context.engine, work, retry=True)
    if not found:
        raise CommandFailed("Not subscribed to that name.", "[NONEXISTENT]")
    await _mailboxes_changed(session)
    return tagged(command.tag, "OK", "Unsubscribe completed.")


def _pattern(reference: str, pattern: str) -> ListPattern:
    """The joined pattern in NFC, as names are stored and listed (RFC 9051 5.1): a
    pattern in another normal form matches the same names. Joined first, normalised
    after: a reference may end where a combining mark of the pattern begins."""
    return ListPattern(normal_name(reference + pattern), DELIMITER)


def _tree(boxes: list[Mailbox]) -> dict[str, Mailbox | None]:
    """Every folder by its NFC name (a name stored before names were normalised is
    listed in NFC too: one form for LIST, LSUB and the subscriptions), plus parents
    that exist only as a level of a name (None).

    Two folders whose names differ only in normal form (made as two before names were
    normalised) both stay listed: the one stored in NFC under that name, the other
    under the name as stored, so that neither disappears from the list."""
    tree: dict[str, Mailbox | None] = {b.name: b for b in boxes if normal_name(b.name) == b.name}
    for box in boxes:
        if normal_name(box.name) != box.name:
            tree[box.name if normal_name(box.name) in tree else normal_name(box.name)] = box
    for name in list(tree):
        levels = name.split(DELIMITER)
        for depth in range(1, len(levels)):
            tree.setdefault(DELIMITER.join(levels[:depth]), None)
    return tree


def listed_names(boxes: list[Mailbox]) -> dict[MailboxId, str]:
    """Each folder's name as LIST shows it (`_tree`): NOTIFY's STATUS and LIST
    responses name folders the same way."""
    return {MailboxId(box.id): name for name, box in _tree(boxes).items() if box is not None}


def _ancestors(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:depth]) for depth in range(1, len(levels))]


async def _list(session: Session, command: List) -> bytes:
    """LIST, with the RFC 5258 selection and return options and RFC 5819 STATUS."""
    account = session.user_account
    patterns = list(command.patterns)
    if patterns == [""]:
        await session.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return tagged(command.tag, "OK", "List completed.")
    selection, returns = command.selection, command.returns
    want_subscribed = "SUBSCRIBED" in selection or "SUBSCRIBED" in returns
    async with session.context.engine.begin() as conn:
        boxes = await list_mailboxes(conn, account.user.id, account)
        subscribed = await list_subscriptions(conn, account) if want_subscribed else set()
    tree = _tree(boxes)
    children: set[str] = {a for name in tree for a in _ancestors(name)}
    criteria = [o for o in ("SUBSCRIBED", "SPECIAL-USE") if o in selection]

    def meets(name: str) -> bool:
        """Whether `name` satisfies every selection criterion (RFC 5258 section 3)."""
        if "SUBSCRIBED" in selection and name not in subscribed:
            return False
        box = tree.get(name)
        return "SPECIAL-USE" not in selection or (box is not None and bool(box.special_use))

    matchers = [_pattern(command.reference, p) for p in patterns]

    def returned(name: str) -> bool:
        # In NFC, as the patterns: a folder listed under a name stored in NFD (one of
        # two made before names were normalised, see `_tree`) matches as the other.
        return any(m.fullmatch(normal_name(name)) for m in matchers)

    names = set(tree) | (set(subscribed) if "SUBSCRIBED" in selection else set())
    selected = {name for name in names if meets(name)}
    # RFC 5258 section 3.5: CHILDINFO tells of a matching descendant this LIST does not
    # return itself; a parent that does not match is listed only for such a child.
    hidden_below: set[str] = set()
    if "RECURSIVEMATCH" in selection:
        for name in selected:
            if not returned(name):
                hidden_below.update(_ancestors(name))
    childinfo = b' ("CHILDINFO" (' + " ".join(f'"{c}"' for c in criteria).encode() + b"))"
    for name in sorted(selected | hidden_below, key=lambda n: (n != "INBOX", n)):
        if not returned(name):
            continue
        box = tree.get(name)
        attributes: list[str] = []
        if name not in tree:
            attributes.append("\\NonExistent")
        elif box is None:
            attributes.append("\\Noselect")
        if name in tree:
            attributes.append("\\HasChildren" if name in children else "\\HasNoChildren")
        if box is not None and box.special_use:
            attributes.append(box.special_use)
        if want_subscribed and name in subscribed:
            attributes.append("\\Subscribed")
        line = (
            b"* LIST ("
            + " ".join(attributes).encode()
            + b') "/" '
            + wire_name(name, utf8_names(session))
        )
        if name in hidden_below:
            line += childinfo
        await session.send(line + b"\r\n")
        if command.status_items and box is not None:
            async with session.context.engine.connect() as conn:
                status = await _status_line(session, conn, box, command.status_items, name)
                await session.send(status)
    return tagged(command.tag, "OK", "List completed.")


async def list_(session: Session, command: List) -> bytes:
    _refuse_recent(session, command.status_items)
    return await _list(session, command)


def _refuse_recent(session: Session, items: Iterable[str]) -> None:
    """RFC 9051 has no \\Recent, so no RECENT status item: a rev2 session asking for
    it gets BAD, as for any item outside the grammar."""
    if "RECENT" in items and "IMAP4rev2" in session.enabled:
        raise CommandFailed("RECENT is not an IMAP4rev2 STATUS item.", status="BAD")


async def lsub(session: Session, command: Lsub) -> bytes:
    account = session.user_account
    if command.pattern == "":
        await session.send(b'* LSUB (\\Noselect) "/" ""\r\n')
        return tagged(command.tag, "OK", "Lsub completed.")
    async with session.context.engine.begin() as conn:
        subscribed = await list_subscriptions(conn, account)
    matcher = _pattern(command.reference, command.pattern)
    # RFC 3501 6.3.9: with "%", an unsubscribed parent of a subscribed name is \Noselect.
    parents = {a for name in subscribed for a in _ancestors(name)} - subscribed
    lines = [(name, b"()") for name in subscribed if matcher.fullmatch(name)]
    if "%" in command.pattern:
        lines += [(name, b"(\\Noselect)") for name in parents if matcher.fullmatch(name)]
    for name, attributes in sorted(lines, key=lambda item: (item[0] != "INBOX", item[0])):
        await session.send(
            b"* LSUB " + attributes + b' "/" ' + wire_name(name, utf8_names(session)) + b"\r\n"
        )
    return tagged(command.tag, "OK", "Lsub completed.")


async def namespace(session: Session, command: Namespace) -> bytes:
    await session.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return tagged(command.tag, "OK", "Namespace completed.")


async def _status_line(
    session: Session,
    conn: AsyncConnection,
    box: Mailbox,
    items: Iterable[str],
    listed: str | None = None,
) -> bytes:
    """One ``* STATUS`` response for `box` (STATUS and LIST-STATUS share it), naming it
    `listed` (LIST-STATUS: as the LIST line before it did), else in NFC."""
    items = list(items)
    recent = unseen = deleted = deleted_size = size = 0
    if any(i in ("UNSEEN", "DELETED", "DELETED-STORAGE", "SIZE", "RECENT") for i in items):
        # The account's listing of the mailbox: loaded once, then only what changed.
        listing = await mailbox_listing(session.context.engine, session.user_account, box)
        count, recent, unseen = len(listing.uids), listing.recent, len(listing.unseen)
        deleted, deleted_size, size = listing.deleted, listing.deleted_size, listing.size
        # `box` was read before the listing: a delivery committing in between is in the
        # listing's counts but not in the box row, and MESSAGES 2 UIDNEXT 2 would tell
        # a client that a message it counts does not exist yet. Neither value can be
        # ahead of the mailbox, so the larger of the two is the consistent one.
        # HIGHESTMODSEQ may stay the box's: one that lags only makes a client's next
        # CHANGEDSINCE return that newer message once more.
        uidnext = max(box.uidnext, listing.uids[-1] + 1 if listing.uids else 0)
        highest_modseq = box.highest_modseq
    else:
        state = await mailbox_state(conn, box.id)
        if state is None:
            raise MailboxNotFound("No such mailbox.")
        count, uidnext, highest_modseq = state.messages, state.uidnext, state.highest_modseq
    values: list[ImapValue] = []
    for item in items:
        value: ImapValue
        if item == "MESSAGES":
            value = count
        elif item == "RECENT":
            value = recent
        elif item == "UIDNEXT":
            value = uidnext
        elif item == "UIDVALIDITY":
            value = box.uidvalidity
        elif item == "UNSEEN":
            value = unseen
        elif item == "DELETED":
            value = deleted
        elif item == "DELETED-STORAGE":
            # RFC 9208: what an EXPUNGE would give back, in the STORAGE resource's unit
            # (1024 octets) and as the quota counts it.
            value = -(-deleted_size // 1024)
        elif item == "HIGHESTMODSEQ":
            value = highest_modseq
        elif item == "SIZE":
            value = size
        elif item == "APPENDLIMIT":
            value = session.config.imap.append_limit
        elif item == "MAILBOXID":  # RFC 8474 4.2
            value = [Atom(mailbox_object_id(session.user_account, box.id))]
        else:
            continue
        values += [Atom(item), value]
    name = wire_name(normal_name(box.name) if listed is None else listed, utf8_names(session))
    return b"* STATUS " + name + b" " + untagged(values)[2:]


async def status(session: Session, command: Status) -> bytes:
    _refuse_recent(session, command.items)
    async with session.context.engine.connect() as conn:
        box = await get_mailbox(conn, session.user_account, command.mailbox)
        await session.send(await _status_line(session, conn, box, command.items))
    return tagged(command.tag, "OK", "Status completed.")


async def check(session: Session, command: Check) -> bytes:
    return tagged(command.tag, "OK", "Check completed.")


async def close(session: Session, command: Close) -> bytes:
    selected = session.mailbox
    if not selected.read_only:
        try:
            await expunge_deleted(session, None, report=False)
        except StoreError:
            pass
    selected.close()
    session.selected = None
    session.state = "auth"
    return tagged(command.tag, "OK", "Close completed.")


async def unselect(session: Session, command: Unselect) -> bytes:
    session.mailbox.close()
    session.selected = None
    session.state = "auth"
    return tagged(command.tag, "OK", "Unselect completed.")

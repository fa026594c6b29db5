"""QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA and SETQUOTA.

A user has one quota root, named as Dovecot names it ("User quota"), governing all their
mailboxes, with up to two resources: STORAGE, the virtual_users.quota column (the one
limit the ISPmail schema has) in units of 1024 octets, against the same usage delivery,
APPEND and COPY check (padded sizes, see `store.used_bytes`); and MESSAGE, the number
of messages in all folders against `quota.messages` (one limit for every user, as
Dovecot's `quota_rule = *:messages=N`). A resource without a limit (0) is not reported,
and a user with neither has no quota root at all. SETQUOTA is refused: the admin sets
quotas in SQL, with `cryptmail user`, or in the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server.commands._mailboxes import utf8_names, wire_name
from cryptmail.imap.wire._requests import GetQuota, GetQuotaRoot, SetQuota
from cryptmail.imap.wire._response import Atom, ImapValue, Raw, tagged, untagged
from cryptmail.store import get_mailbox, message_count, used_bytes
from cryptmail.users import get_user_by_id

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

ROOT: Final = "User quota"


def _kib(octets: int) -> int:
    return -(-octets // 1024)


async def _quota_line(session: Session) -> bytes | None:
    """The ``* QUOTA`` response of the user's root; None if the user has no quota."""
    account = session.user_account
    message_limit = session.config.quota.messages
    resources: list[ImapValue] = []
    async with session.context.engine.connect() as conn:
        # Read now, not at login: the admin may have changed it since.
        limit = (await get_user_by_id(conn, account.user.id)).quota
        if limit > 0:
            used = await used_bytes(conn, account.user.id)
            resources += [Atom("STORAGE"), _kib(used), _kib(limit)]
        if message_limit > 0:
            count = await message_count(conn, account.user.id)
            resources += [Atom("MESSAGE"), count, message_limit]
    if not resources:
        return None
    return untagged(Atom("QUOTA"), ROOT, resources)


async def getquotaroot(session: Session, command: GetQuotaRoot) -> bytes:
    async with session.context.engine.connect() as conn:
        box = await get_mailbox(conn, session.user_account, command.mailbox)
    quota = await _quota_line(session)
    name = Raw(wire_name(box.name, utf8_names(session)))
    if quota is None:
        await session.send(untagged(Atom("QUOTAROOT"), name))
    else:
        await session.send(untagged(Atom("QUOTAROOT"), name, ROOT) + quota)
    return tagged(command.tag, "OK", "Getquotaroot completed.")


async def getquota(session: Session, command: GetQuota) -> bytes:
    quota = await _quota_line(session) if command.root == ROOT else None
    if quota is None:
        raise CommandFailed("No such quota root.", "[NONEXISTENT]")
    await session.send(quota)
    return tagged(command.tag, "OK", "Getquota completed.")


async def setquota(session: Session, command: SetQuota) -> bytes:
    raise CommandFailed("Quotas are set by the administrator.", "[NOPERM]")

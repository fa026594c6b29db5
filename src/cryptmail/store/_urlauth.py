"""URLAUTH grants (RFC 4467): a message part readable by whoever holds its URL's token.

The owner's session (key unlocked) grants: a fresh random token, never stored, names
the row by ``url_token_lookup(token)`` and seals the grant under a key derived from it,
with the canonical URL and the owner's id as associated data. The grant holds what a
read needs without the owner's key: the message row's id, mailbox and UID (checked, so
an expunged or moved message answers nothing), its blob id and the blob's payload key,
and `extra`, the protocol layer's plan of the part. Anyone else (a submission server)
redeems with the token alone. What a thief of the table learns is in docs/security.md,
"URLAUTH grants": who has how many URLs, when made, when they expire; nothing else.

Every failure to redeem (unknown token, another URL, expired, revoked, expunged, a
missing or changed blob) is the same None, so a caller cannot tell which.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import (
    PayloadKey,
    context,
    new_url_token,
    open_url_grant,
    seal_url_grant,
    url_token_lookup,
)
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import (
    BlobMissing,
    CryptoError,
    DecryptionFailed,
    ObjectTampered,
    QuotaExceeded,
)
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId, MailboxId, MessageId
from cryptmail.store._reader import OpenedBlob, open_blob
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)

_GRANT_VERSION: Final = 1
# version, owner, message id, mailbox id, uid, blob id, sealed, payload key (or zeros).
_HEAD: Final = struct.Struct(">BIQQQ16sB64s")
_MAX_EXTRA: Final = 2048


@dataclass(frozen=True)
class UrlGrant:
    """A redeemed URL: the owner, the opened blob and the protocol layer's `extra`."""

    owner: UserId
    opened: OpenedBlob
    extra: bytes

    def __repr__(self) -> str:
        return f"UrlGrant(owner={self.owner}, extra={len(self.extra)} bytes)"


def _aad(owner: int, url: tuple[str, ...]) -> bytes:
    return context("cm_url_grants", owner, *url)


def _mailbox_tag(account: UnlockedAccount, mailbox_id: int) -> bytes:
    # Keyed by the data key: a thief sees equal tags, never which mailbox.
    lookup = account.fields.lookup(str(mailbox_id).encode(), b"urlauth-mailbox")
    return lookup[:16]


def parse_url_token(text: str) -> bytes | None:
    """The token of a URL (hex), or None if it cannot be one of ours."""
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


async def grant_url(
    engine: AsyncEngine,
    account: UnlockedAccount,
    *,
    url: tuple[str, ...],
    row_id: MessageId,
    mailbox_id: MailboxId,
    uid: int,
    opened: OpenedBlob,
    extra: bytes,
    expires_at: dt.datetime | None,
    limit: int,
) -> str:
    """Store a grant for `url` (its canonical parts) and return the token, as hex.

    Expired rows of the user go first; QuotaExceeded when the user already holds
    `limit` URLs (RESETKEY frees them).
    """
    if len(extra) > _MAX_EXTRA:
        raise ValueError("a URLAUTH plan is at most 2 KiB")
    owner = account.user.id
    payload_key = opened.payload_key.to_bytes() if opened.payload_key is not None else bytes(64)
    grant = (
        _HEAD.pack(
            _GRANT_VERSION, owner, row_id, mailbox_id, uid, opened.blob_id,
            1 if opened.header.sealed else 0, payload_key,
        )
        + extra
    )  # fmt: skip
    token = new_url_token()
    row = {
        "lookup": url_token_lookup(token),
        "user_id": owner,
        "mailbox_tag": _mailbox_tag(account, mailbox_id),
        "grant_sealed": seal_url_grant(token, _aad(owner, url), grant),
        "created_at": utcnow(),
        "expires_at": expires_at,
    }
    grants = t.cm_url_grants

    def work(conn: Connection) -> None:
        # The user's row first: parallel grants of the user queue here, so the count
        # below sees every grant committed before ours (on MariaDB the count's snapshot
        # starts after this lock). Without it, on MariaDB and PostgreSQL each of eight
        # parallel grants counted none of the others and all fitted under the limit.
        # NO KEY UPDATE on PostgreSQL: inserts that only reference the user go on.
        conn.execute(
            select(t.virtual_users.c.id)
            .where(t.virtual_users.c.id == owner)
            .with_for_update(key_share=True)
        )
        conn.execute(
            delete(grants).where(grants.c.user_id == owner, grants.c.expires_at <= utcnow())
        )
        held = conn.scalar(
            select(func.count()).select_from(grants).where(grants.c.user_id == owner)
        )
        if (held or 0) >= limit:
            raise QuotaExceeded(
                f"user {owner} holds {held} URLAUTH URLs, the limit; "
                "RESETKEY revokes them, or raise urlauth.max_urls_per_user"
            )
        conn.execute(grants.insert().values(**row))

    await run_transaction(engine, work, retry=True)
    log.info("URLAUTH: user id %d granted a URL", owner)
    return token.hex()


async def redeem_url(
    engine: AsyncEngine, blobs: BlobStore, *, token: bytes, url: tuple[str, ...]
) -> UrlGrant | None:
    """The grant `token` opens for `url`, with its blob opened; None for any failure."""
    grants = t.cm_url_grants
    try:
        lookup = url_token_lookup(token)
    except DecryptionFailed:
        return None
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                select(grants.c.user_id, grants.c.grant_sealed, grants.c.expires_at).where(
                    grants.c.lookup == lookup
                )
            )
        ).first()
    if found is None:
        return None
    owner = UserId(int(found.user_id))
    if found.expires_at is not None and found.expires_at <= utcnow():
        async with engine.begin() as conn:
            await conn.execute(delete(grants).where(grants.c.lookup == lookup))
        return None
    try:
        grant = open_url_grant(token, _aad(owner, url), bytes(found.grant_sealed))
        version, user, row_id, mailbox_id, uid, blob_id, sealed, key = _HEAD.unpack_from(grant)
    except (DecryptionFailed, struct.error):
        return None
    if version != _GRANT_VERSION or user != owner:
        return None
    messages = t.cm_messages
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(messages.c.mailbox_id, messages.c.uid, messages.c.blob_id).where(
                    messages.c.id == row_id
                )
            )
        ).first()
    if row is None or (int(row.mailbox_id), int(row.uid), bytes(row.blob_id)) != (
        mailbox_id, uid, blob_id,
    ):  # fmt: skip
        return None  # expunged, or moved away from the mailbox and UID the URL names
    try:
        opened = await open_blob(
            blobs,
            None,
            BlobId(blob_id),
            payload_key=PayloadKey.from_bytes(key) if sealed else None,
            expect_sealed=bool(sealed),
        )
    except BlobMissing:
        return None
    except (ObjectTampered, CryptoError) as exc:
        log.error("URLAUTH: the blob of a URL of user id %d failed: %s", owner, exc)
        return None
    return UrlGrant(owner, opened, grant[_HEAD.size :])


async def revoke_urls(
    engine: AsyncEngine, account: UnlockedAccount, mailbox_id: MailboxId | None = None
) -> int:
    """Delete the user's grants (of one mailbox, when given); how many went."""
    grants = t.cm_url_grants
    query = delete(grants).where(grants.c.user_id == account.user.id)
    if mailbox_id is not None:
        query = query.where(grants.c.mailbox_tag == _mailbox_tag(account, mailbox_id))
    async with engine.begin() as conn:
        result = await conn.execute(query)
    log.info("URLAUTH: user id %d revoked %d URLs", account.user.id, result.rowcount)
    return int(result.rowcount)


async def prune_urls(engine: AsyncEngine) -> int:
    """Delete every expired grant (housekeeping); how many went."""
    grants = t.cm_url_grants
    async with engine.begin() as conn:
        result = await conn.execute(delete(grants).where(grants.c.expires_at <= utcnow()))
    return int(result.rowcount)

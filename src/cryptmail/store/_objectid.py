"""RFC 8474 object ids (MAILBOXID, EMAILID): stable, opaque, and telling nothing.

Each is a keyed hash (the account's field lookup key) of a row id that never changes
for the object: the mailbox row id (kept by RENAME) and the blob id (shared by COPY and
MOVE, so a copy has the same EMAILID as its source, as RFC 8474 5.1 asks). Without the
account key nobody can link an id to a row, and the id says nothing of the content.
THREADID is not derived: without threading the server answers NIL (RFC 8474 5.2).
"""

from __future__ import annotations

import base64
from typing import Final

from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId, MailboxId

__all__ = ["email_object_id", "mailbox_object_id"]

_ID_BYTES: Final = 15  # 120 bits: 20 base64url characters, no padding


def _object_id(account: UnlockedAccount, prefix: str, value: bytes) -> str:
    digest = account.fields.lookup(value, b"objectid|" + prefix.encode("ascii"))
    # A letter first, then base64url ("-" and "_" are allowed by RFC 8474's objectid).
    return prefix + base64.urlsafe_b64encode(digest[:_ID_BYTES]).decode("ascii")


def mailbox_object_id(account: UnlockedAccount, mailbox_id: MailboxId) -> str:
    """MAILBOXID: the same through a RENAME, never given to another mailbox of the user."""
    return _object_id(account, "M", str(int(mailbox_id)).encode("ascii"))


def email_object_id(account: UnlockedAccount, blob_id: BlobId) -> str:
    """EMAILID: the same for a message and its copies in any of the user's mailboxes."""
    return _object_id(account, "E", bytes(blob_id))

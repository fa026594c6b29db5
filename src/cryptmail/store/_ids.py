"""Id types, so mypy keeps blob, mailbox and message ids apart (`UserId` is the db
layer's; this package re-exports it)."""

from __future__ import annotations

import os
from typing import NewType

BlobId = NewType("BlobId", bytes)
MailboxId = NewType("MailboxId", int)
MessageId = NewType("MessageId", int)


def new_blob_id() -> BlobId:
    """A random 16-byte id: never derived from content or address."""
    return BlobId(os.urandom(16))

"""Object ids (RFC 8474): stable per object, different across objects and users."""

from __future__ import annotations

import re

from cryptmail import store
from cryptmail.keys import unlock_account
from cryptmail.store import BlobId, MailboxId

from .conftest import PASSWORD, StoreRig

OBJECTID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,254}")


async def test_ids_are_stable_distinct_and_keyed(rig: StoreRig) -> None:
    await rig.user("alice@example.org")
    await rig.user("bob@example.org")
    alice, _ = await unlock_account(rig.engine, "alice@example.org", PASSWORD, rig.config.crypto)
    again, _ = await unlock_account(rig.engine, "alice@example.org", PASSWORD, rig.config.crypto)
    bob, _ = await unlock_account(rig.engine, "bob@example.org", PASSWORD, rig.config.crypto)
    box, blob = MailboxId(7), BlobId(b"\x01" * 16)
    ids = [
        store.mailbox_object_id(alice, box),
        store.mailbox_object_id(alice, MailboxId(8)),
        store.email_object_id(alice, blob),
        store.email_object_id(alice, BlobId(b"\x02" * 16)),
        store.mailbox_object_id(bob, box),
        store.email_object_id(bob, blob),
    ]
    assert all(OBJECTID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    # A second unlock (another session) derives the same ids.
    assert store.mailbox_object_id(again, box) == ids[0]
    assert store.email_object_id(again, blob) == ids[2]
    # Nothing of the row id shows: no digits of it, no blob bytes.
    assert blob.hex() not in ids[2] and bytes(blob).decode("latin-1") not in ids[2]

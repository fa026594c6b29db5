"""cryptmail.store: mailboxes, message rows, the encrypted index and the blobs.

Delivery appends with only the user's public key; a session holding the unlocked
account reads, indexes and caches. Everything that carries meaning is sealed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptmail.db import UserId
    from cryptmail.store._append import (
        Appended,
        DeliveryJob,
        DeliveryTarget,
        StoredBlob,
        check_quota,
        deliver_many,
        deliver_message,
        expire_delivery_tags,
        insert_row,
        message_count,
        resolve_delivery,
        resolve_delivery_sync,
        resolve_target,
        used_bytes,
        write_blob,
    )
    from cryptmail.store._check import CheckReport, check_store, sweep_orphans
    from cryptmail.store._codec import CachedKey, MessageCache, round_size
    from cryptmail.store._encrypt import EncryptProgress, encrypt_mailboxes
    from cryptmail.store._filing import (
        FilingNotes,
        FilingRequest,
        apply_filing_notes,
        filing_backlog,
        holding_mailbox,
        pending_notes,
    )
    from cryptmail.store._first_login import FirstLoginImports, ImportNotice
    from cryptmail.store._ids import BlobId, MailboxId, MessageId, new_blob_id
    from cryptmail.store._import import ImportProgress, drop_bare_caches, import_maildir
    from cryptmail.store._listing import (
        LISTINGS_PER_ACCOUNT,
        MailboxListing,
        cached_listing,
        drop_listings,
        listing_count,
        mailbox_counters,
        mailbox_listing,
    )
    from cryptmail.store._mailboxes import (
        DEFAULT_MAILBOXES,
        DELIMITER,
        Mailbox,
        create_default_mailboxes,
        create_mailbox,
        delete_mailbox,
        ensure_default_mailboxes,
        find_mailbox,
        get_mailbox,
        inbox_id,
        list_mailboxes,
        mailbox_by_id,
        normal_name,
        rename_inbox,
        rename_mailbox,
    )
    from cryptmail.store._maildir import MaildirFolder, scan_maildir
    from cryptmail.store._messages import (
        RECENT_FLAG,
        AppendItem,
        FlagUpdate,
        MessageRow,
        append_rows,
        change_flags,
        claim_messages,
        copy_messages,
        drop_unreferenced_blobs,
        expunge,
        expunge_messages,
        fill_caches,
        load_cache,
        load_caches,
        load_message,
        load_messages,
        load_rows,
        mailbox_counts,
        mailbox_state,
        move_messages,
        save_cache,
        save_caches,
        set_flags,
        unreferenced_blobs,
        vanished_since,
    )
    from cryptmail.store._notify import (
        RESCAN,
        ChangeBus,
        ChangeForwarder,
        ChangePublisher,
        ChangeQueue,
        PipePublisher,
    )
    from cryptmail.store._objectid import email_object_id, mailbox_object_id
    from cryptmail.store._reader import (
        HEAD_SIZE,
        OpenedBlob,
        held_range_pieces,
        open_blob,
        open_small_blob,
        read_plaintext,
        read_range,
        small_blob_plaintext,
        stream_plaintext,
    )
    from cryptmail.store._reseal import reseal_old_fields
    from cryptmail.store._sealed_import import seal_maildir
    from cryptmail.store._sortchunks import (
        SORT_CHUNK_UIDS,
        load_sort_chunks,
        open_sort_chunk,
        save_sort_chunks,
        seal_sort_chunk,
        sort_chunk_of,
    )
    from cryptmail.store._sortentries import (
        DeliveryEpochs,
        SortFields,
        TakenEntries,
        sort_entry_count,
        take_sort_entries,
    )
    from cryptmail.store._sortfields import (
        MAX_SORT_HEADER,
        SORT_FIELDS,
        SortHeader,
        decode_sort_fields,
        encode_sort_fields,
        header_sort_fields,
    )
    from cryptmail.store._spool import Spool, sweep_spools
    from cryptmail.store._staged import (
        StagedImport,
        StagedSource,
        list_staged,
        stage_import,
    )
    from cryptmail.store._subscriptions import list_subscriptions, subscribe, unsubscribe
    from cryptmail.store._urlauth import (
        UrlGrant,
        grant_url,
        parse_url_token,
        prune_urls,
        redeem_url,
        revoke_urls,
    )

__all__ = [
    "DEFAULT_MAILBOXES",
    "DELIMITER",
    "HEAD_SIZE",
    "LISTINGS_PER_ACCOUNT",
    "MAX_SORT_HEADER",
    "RECENT_FLAG",
    "RESCAN",
    "SORT_CHUNK_UIDS",
    "SORT_FIELDS",
    "AppendItem",
    "Appended",
    "BlobId",
    "CachedKey",
    "ChangeBus",
    "ChangeForwarder",
    "ChangePublisher",
    "ChangeQueue",
    "CheckReport",
    "DeliveryEpochs",
    "DeliveryJob",
    "DeliveryTarget",
    "EncryptProgress",
    "FilingNotes",
    "FilingRequest",
    "FirstLoginImports",
    "FlagUpdate",
    "ImportNotice",
    "ImportProgress",
    "Mailbox",
    "MailboxId",
    "MailboxListing",
    "MaildirFolder",
    "MessageCache",
    "MessageId",
    "MessageRow",
    "OpenedBlob",
    "PipePublisher",
    "SortFields",
    "SortHeader",
    "Spool",
    "StagedImport",
    "StagedSource",
    "StoredBlob",
    "TakenEntries",
    "UrlGrant",
    "UserId",
    "append_rows",
    "apply_filing_notes",
    "cached_listing",
    "change_flags",
    "check_quota",
    "check_store",
    "claim_messages",
    "copy_messages",
    "create_default_mailboxes",
    "create_mailbox",
    "decode_sort_fields",
    "delete_mailbox",
    "deliver_many",
    "deliver_message",
    "drop_bare_caches",
    "drop_listings",
    "drop_unreferenced_blobs",
    "email_object_id",
    "encode_sort_fields",
    "encrypt_mailboxes",
    "ensure_default_mailboxes",
    "expire_delivery_tags",
    "expunge",
    "expunge_messages",
    "filing_backlog",
    "fill_caches",
    "find_mailbox",
    "get_mailbox",
    "grant_url",
    "header_sort_fields",
    "held_range_pieces",
    "holding_mailbox",
    "import_maildir",
    "inbox_id",
    "insert_row",
    "list_mailboxes",
    "list_staged",
    "list_subscriptions",
    "listing_count",
    "load_cache",
    "load_caches",
    "load_message",
    "load_messages",
    "load_rows",
    "load_sort_chunks",
    "mailbox_by_id",
    "mailbox_counters",
    "mailbox_counts",
    "mailbox_listing",
    "mailbox_object_id",
    "mailbox_state",
    "message_count",
    "move_messages",
    "new_blob_id",
    "normal_name",
    "open_blob",
    "open_small_blob",
    "open_sort_chunk",
    "parse_url_token",
    "pending_notes",
    "prune_urls",
    "read_plaintext",
    "read_range",
    "redeem_url",
    "rename_inbox",
    "rename_mailbox",
    "reseal_old_fields",
    "resolve_delivery",
    "resolve_delivery_sync",
    "resolve_target",
    "revoke_urls",
    "round_size",
    "save_cache",
    "save_caches",
    "save_sort_chunks",
    "scan_maildir",
    "seal_maildir",
    "seal_sort_chunk",
    "set_flags",
    "small_blob_plaintext",
    "sort_chunk_of",
    "sort_entry_count",
    "stage_import",
    "stream_plaintext",
    "subscribe",
    "sweep_orphans",
    "sweep_spools",
    "take_sort_entries",
    "unreferenced_blobs",
    "unsubscribe",
    "used_bytes",
    "vanished_since",
    "write_blob",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_append": (
        "Appended",
        "DeliveryJob",
        "DeliveryTarget",
        "StoredBlob",
        "check_quota",
        "deliver_many",
        "deliver_message",
        "expire_delivery_tags",
        "insert_row",
        "message_count",
        "resolve_delivery",
        "resolve_delivery_sync",
        "resolve_target",
        "used_bytes",
        "write_blob",
    ),
    "_check": (
        "CheckReport",
        "check_store",
        "sweep_orphans",
    ),
    "_codec": (
        "CachedKey",
        "MessageCache",
        "round_size",
    ),
    "_encrypt": (
        "EncryptProgress",
        "encrypt_mailboxes",
    ),
    "_filing": (
        "FilingNotes",
        "FilingRequest",
        "apply_filing_notes",
        "filing_backlog",
        "holding_mailbox",
        "pending_notes",
    ),
    "_first_login": (
        "FirstLoginImports",
        "ImportNotice",
    ),
    "_ids": (
        "BlobId",
        "MailboxId",
        "MessageId",
        "new_blob_id",
    ),
    "_import": (
        "ImportProgress",
        "drop_bare_caches",
        "import_maildir",
    ),
    "_listing": (
        "LISTINGS_PER_ACCOUNT",
        "MailboxListing",
        "cached_listing",
        "drop_listings",
        "listing_count",
        "mailbox_counters",
        "mailbox_listing",
    ),
    "_mailboxes": (
        "DEFAULT_MAILBOXES",
        "DELIMITER",
        "Mailbox",
        "create_default_mailboxes",
        "create_mailbox",
        "delete_mailbox",
        "ensure_default_mailboxes",
        "find_mailbox",
        "get_mailbox",
        "inbox_id",
        "list_mailboxes",
        "mailbox_by_id",
        "normal_name",
        "rename_inbox",
        "rename_mailbox",
    ),
    "_maildir": (
        "MaildirFolder",
        "scan_maildir",
    ),
    "_messages": (
        "RECENT_FLAG",
        "AppendItem",
        "FlagUpdate",
        "MessageRow",
        "append_rows",
        "change_flags",
        "claim_messages",
        "copy_messages",
        "drop_unreferenced_blobs",
        "expunge",
        "expunge_messages",
        "fill_caches",
        "load_cache",
        "load_caches",
        "load_message",
        "load_messages",
        "load_rows",
        "mailbox_counts",
        "mailbox_state",
        "move_messages",
        "save_cache",
        "save_caches",
        "set_flags",
        "unreferenced_blobs",
        "vanished_since",
    ),
    "_notify": (
        "RESCAN",
        "ChangeBus",
        "ChangeForwarder",
        "ChangePublisher",
        "ChangeQueue",
        "PipePublisher",
    ),
    "_objectid": (
        "email_object_id",
        "mailbox_object_id",
    ),
    "_reader": (
        "HEAD_SIZE",
        "OpenedBlob",
        "held_range_pieces",
        "open_blob",
        "open_small_blob",
        "read_plaintext",
        "read_range",
        "small_blob_plaintext",
        "stream_plaintext",
    ),
    "_reseal": ("reseal_old_fields",),
    "_sealed_import": ("seal_maildir",),
    "_sortchunks": (
        "SORT_CHUNK_UIDS",
        "load_sort_chunks",
        "open_sort_chunk",
        "save_sort_chunks",
        "seal_sort_chunk",
        "sort_chunk_of",
    ),
    "_sortentries": (
        "DeliveryEpochs",
        "SortFields",
        "TakenEntries",
        "sort_entry_count",
        "take_sort_entries",
    ),
    "_sortfields": (
        "MAX_SORT_HEADER",
        "SORT_FIELDS",
        "SortHeader",
        "decode_sort_fields",
        "encode_sort_fields",
        "header_sort_fields",
    ),
    "_spool": (
        "Spool",
        "sweep_spools",
    ),
    "_staged": (
        "StagedImport",
        "StagedSource",
        "list_staged",
        "stage_import",
    ),
    "_subscriptions": (
        "list_subscriptions",
        "subscribe",
        "unsubscribe",
    ),
    "_urlauth": (
        "UrlGrant",
        "grant_url",
        "parse_url_token",
        "prune_urls",
        "redeem_url",
        "revoke_urls",
    ),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_append":
        from cryptmail.store import _append

        value = getattr(_append, name)
    elif module == "_check":
        from cryptmail.store import _check

        value = getattr(_check, name)
    elif module == "_codec":
        from cryptmail.store import _codec

        value = getattr(_codec, name)
    elif module == "_encrypt":
        from cryptmail.store import _encrypt

        value = getattr(_encrypt, name)
    elif module == "_filing":
        from cryptmail.store import _filing

        value = getattr(_filing, name)
    elif module == "_first_login":
        from cryptmail.store import _first_login

        value = getattr(_first_login, name)
    elif module == "_ids":
        from cryptmail.store import _ids

        value = getattr(_ids, name)
    elif module == "_import":
        from cryptmail.store import _import

        value = getattr(_import, name)
    elif module == "_listing":
        from cryptmail.store import _listing

        value = getattr(_listing, name)
    elif module == "_mailboxes":
        from cryptmail.store import _mailboxes

        value = getattr(_mailboxes, name)
    elif module == "_maildir":
        from cryptmail.store import _maildir

        value = getattr(_maildir, name)
    elif module == "_messages":
        from cryptmail.store import _messages

        value = getattr(_messages, name)
    elif module == "_notify":
        from cryptmail.store import _notify

        value = getattr(_notify, name)
    elif module == "_objectid":
        from cryptmail.store import _objectid

        value = getattr(_objectid, name)
    elif module == "_reader":
        from cryptmail.store import _reader

        value = getattr(_reader, name)
    elif module == "_reseal":
        from cryptmail.store import _reseal

        value = getattr(_reseal, name)
    elif module == "_sealed_import":
        from cryptmail.store import _sealed_import

        value = getattr(_sealed_import, name)
    elif module == "_sortchunks":
        from cryptmail.store import _sortchunks

        value = getattr(_sortchunks, name)
    elif module == "_sortentries":
        from cryptmail.store import _sortentries

        value = getattr(_sortentries, name)
    elif module == "_sortfields":
        from cryptmail.store import _sortfields

        value = getattr(_sortfields, name)
    elif module == "_spool":
        from cryptmail.store import _spool

        value = getattr(_spool, name)
    elif module == "_staged":
        from cryptmail.store import _staged

        value = getattr(_staged, name)
    elif module == "_subscriptions":
        from cryptmail.store import _subscriptions

        value = getattr(_subscriptions, name)
    elif module == "_urlauth":
        from cryptmail.store import _urlauth

        value = getattr(_urlauth, name)
    elif name == "UserId":
        from cryptmail.db import UserId

        value = UserId
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

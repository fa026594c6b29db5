"""cryptmail.store: mailboxes, message rows, the encrypted index and the blobs.

Delivery appends with only the user's public key; a session holding the unlocked
account reads, indexes and caches. Everything that carries meaning is sealed.
"""

from cryptmail.store._append import (
    Appended,
    StoredBlob,
    check_quota,
    deliver_message,
    insert_row,
    used_bytes,
    write_blob,
)
from cryptmail.store._check import CheckReport, check_store, sweep_orphans
from cryptmail.store._codec import MessageCache, round_size
from cryptmail.store._encrypt import EncryptProgress, encrypt_mailboxes
from cryptmail.store._ids import BlobId, MailboxId, MessageId, UserId, new_blob_id
from cryptmail.store._import import ImportProgress, import_maildir
from cryptmail.store._mailboxes import (
    DEFAULT_MAILBOXES,
    DELIMITER,
    Mailbox,
    create_mailbox,
    delete_mailbox,
    ensure_default_mailboxes,
    get_mailbox,
    inbox_id,
    list_mailboxes,
    mailbox_by_id,
    rename_inbox,
    rename_mailbox,
)
from cryptmail.store._maildir import MaildirFolder, scan_maildir
from cryptmail.store._messages import (
    RECENT_FLAG,
    MessageRow,
    copy_messages,
    drop_unreferenced_blobs,
    expunge,
    load_cache,
    load_caches,
    load_message,
    load_messages,
    mailbox_counts,
    save_cache,
    save_caches,
    set_flags,
    unreferenced_blobs,
    vanished_since,
)
from cryptmail.store._notify import ChangeBus
from cryptmail.store._reader import (
    HEAD_SIZE,
    OpenedBlob,
    open_blob,
    open_small_blob,
    read_plaintext,
    read_range,
    small_blob_plaintext,
    stream_plaintext,
)
from cryptmail.store._spool import Spool, sweep_spools
from cryptmail.store._subscriptions import list_subscriptions, subscribe, unsubscribe

__all__ = [
    "DEFAULT_MAILBOXES",
    "DELIMITER",
    "HEAD_SIZE",
    "RECENT_FLAG",
    "Appended",
    "BlobId",
    "ChangeBus",
    "CheckReport",
    "EncryptProgress",
    "ImportProgress",
    "Mailbox",
    "MailboxId",
    "MaildirFolder",
    "MessageCache",
    "MessageId",
    "MessageRow",
    "OpenedBlob",
    "Spool",
    "StoredBlob",
    "UserId",
    "check_quota",
    "check_store",
    "copy_messages",
    "create_mailbox",
    "delete_mailbox",
    "deliver_message",
    "drop_unreferenced_blobs",
    "encrypt_mailboxes",
    "ensure_default_mailboxes",
    "expunge",
    "get_mailbox",
    "import_maildir",
    "inbox_id",
    "insert_row",
    "list_mailboxes",
    "list_subscriptions",
    "load_cache",
    "load_caches",
    "load_message",
    "load_messages",
    "mailbox_by_id",
    "mailbox_counts",
    "new_blob_id",
    "open_blob",
    "open_small_blob",
    "read_plaintext",
    "read_range",
    "rename_inbox",
    "rename_mailbox",
    "round_size",
    "save_cache",
    "save_caches",
    "scan_maildir",
    "set_flags",
    "small_blob_plaintext",
    "stream_plaintext",
    "subscribe",
    "sweep_orphans",
    "sweep_spools",
    "unreferenced_blobs",
    "unsubscribe",
    "used_bytes",
    "vanished_since",
    "write_blob",
]

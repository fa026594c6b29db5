"""cryptmail.db: the engine, the tables and their migrations, `UserId` (the type of
`virtual_users.id` that every layer above passes around), and the change log that
carries changes to every node (`record_*_change`, `read_changes`, `ChangeListener`)."""

from cryptmail.db import _tables as tables
from cryptmail.db._changes import (
    Change,
    ChangeCursor,
    ChangeKind,
    newest_change,
    oldest_change,
    parse_payload,
    prune_changes,
    read_changes,
    record_mailbox_change,
    record_user_change,
)
from cryptmail.db._clock import utcnow
from cryptmail.db._engine import async_url, create_engine, run_transaction
from cryptmail.db._ids import UserId
from cryptmail.db._leftovers import end_driver_leftovers
from cryptmail.db._listen import APPLICATION_NAME, ChangeListener
from cryptmail.db._migrate import (
    current_revision,
    head_revision,
    listed_head,
    schema_is_current,
    upgrade,
)

__all__ = [
    "APPLICATION_NAME",
    "Change",
    "ChangeCursor",
    "ChangeKind",
    "ChangeListener",
    "UserId",
    "async_url",
    "create_engine",
    "current_revision",
    "end_driver_leftovers",
    "head_revision",
    "listed_head",
    "newest_change",
    "oldest_change",
    "parse_payload",
    "prune_changes",
    "read_changes",
    "record_mailbox_change",
    "record_user_change",
    "run_transaction",
    "schema_is_current",
    "tables",
    "upgrade",
    "utcnow",
]

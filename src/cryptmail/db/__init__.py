"""cryptmail.db: the engine, the tables and their migrations, and `UserId`, the type of
`virtual_users.id` that every layer above passes around."""

from cryptmail.db import _tables as tables
from cryptmail.db._clock import utcnow
from cryptmail.db._engine import async_url, create_engine, run_transaction
from cryptmail.db._ids import UserId
from cryptmail.db._migrate import current_revision, head_revision, upgrade

__all__ = [
    "UserId",
    "async_url",
    "create_engine",
    "current_revision",
    "head_revision",
    "run_transaction",
    "tables",
    "upgrade",
    "utcnow",
]

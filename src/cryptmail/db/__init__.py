"""cryptmail.db: the engine, the tables and their migrations, `UserId` (the type of
`virtual_users.id` that every layer above passes around), and the change log that
carries changes to every node (`record_*_change`, `read_changes`, `ChangeListener`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from cryptmail.db._engine import (
        async_url,
        create_engine,
        run_async_transaction,
        run_transaction,
    )
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
    "run_async_transaction",
    "run_transaction",
    "schema_is_current",
    "tables",
    "upgrade",
    "utcnow",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_changes": (
        "Change",
        "ChangeCursor",
        "ChangeKind",
        "newest_change",
        "oldest_change",
        "parse_payload",
        "prune_changes",
        "read_changes",
        "record_mailbox_change",
        "record_user_change",
    ),
    "_clock": ("utcnow",),
    "_engine": (
        "async_url",
        "create_engine",
        "run_async_transaction",
        "run_transaction",
    ),
    "_ids": ("UserId",),
    "_leftovers": ("end_driver_leftovers",),
    "_listen": (
        "APPLICATION_NAME",
        "ChangeListener",
    ),
    "_migrate": (
        "current_revision",
        "head_revision",
        "listed_head",
        "schema_is_current",
        "upgrade",
    ),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_changes":
        from cryptmail.db import _changes

        value = getattr(_changes, name)
    elif module == "_clock":
        from cryptmail.db import _clock

        value = getattr(_clock, name)
    elif module == "_engine":
        from cryptmail.db import _engine

        value = getattr(_engine, name)
    elif module == "_ids":
        from cryptmail.db import _ids

        value = getattr(_ids, name)
    elif module == "_leftovers":
        from cryptmail.db import _leftovers

        value = getattr(_leftovers, name)
    elif module == "_listen":
        from cryptmail.db import _listen

        value = getattr(_listen, name)
    elif module == "_migrate":
        from cryptmail.db import _migrate

        value = getattr(_migrate, name)
    elif name == "tables":
        from cryptmail.db import _tables

        value = _tables
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

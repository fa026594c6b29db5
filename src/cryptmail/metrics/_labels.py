"""The bounded label values every metric may carry.

A label value comes from a fixed set named here, never from the request: no user,
address, mailbox or client address ever becomes a label (it would leak who mails whom
to anyone who can scrape, and every new value is a new time series). Anything outside
a set is counted as "other".
"""

from __future__ import annotations

from typing import Final

OTHER: Final = "other"

PROTOCOLS: Final = frozenset({"imap", "pop3", "sasl", "web", "lmtp"})
DELIVERY_RESULTS: Final = frozenset({"delivered", "deferred", "rejected"})
LOGIN_RESULTS: Final = frozenset({"ok", "failed", "refused", "error"})
BLOB_OPERATIONS: Final = frozenset({"read", "write", "delete", "size"})
BLOB_RESULTS: Final = frozenset({"ok", "error"})
IMAP_COMMANDS: Final = frozenset(
    {
        "APPEND", "AUTHENTICATE", "CAPABILITY", "CHECK", "CLOSE", "COMPRESS", "COPY",
        "CREATE", "DELETE", "ENABLE", "EXAMINE", "EXPUNGE", "FETCH", "GETMETADATA",
        "GETQUOTA", "GETQUOTAROOT", "ID", "IDLE", "LIST", "LOGIN", "LOGOUT", "LSUB",
        "MOVE", "NAMESPACE", "NOOP", "RENAME", "SEARCH", "SELECT", "SETMETADATA",
        "SETQUOTA", "STARTTLS", "STATUS", "STORE", "SUBSCRIBE", "UNSELECT",
        "UNSUBSCRIBE", "XLIST",
    }
)  # fmt: skip
"""RFC 3501/9051 commands and the extensions cryptmail knows; the UID forms count under
the command's own name."""


def bounded(value: str, allowed: frozenset[str]) -> str:
    """`value` if it is one of `allowed`, else "other"."""
    return value if value in allowed else OTHER

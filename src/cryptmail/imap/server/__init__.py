"""cryptmail.imap.server: the IMAP server, with I/O, asyncio and the store.

The listener accepts connections and runs one session each; the session keeps the
RFC 3501 state and dispatches every parsed command through the explicit table in
:mod:`cryptmail.imap.server.commands`, where each command's handler lives. The selected
mailbox, FETCH's loading and the blob read-ahead sit beside the session.
"""

from cryptmail.imap.server._listener import ImapListener, make_context

__all__ = ["ImapListener", "make_context"]

"""cryptmail.imap.server.commands: one module per group of IMAP commands, and the table
:data:`COMMANDS` that the session dispatches through; :func:`receive_append` takes
an APPEND whose message literal is already streaming.

Each handler takes the session and its parsed command, writes untagged responses with
``Session.send`` and returns the tagged completion line, or raises ``CommandFailed``.
"""

from cryptmail.imap.server.commands._append import receive_append
from cryptmail.imap.server.commands._table import COMMANDS

__all__ = ["COMMANDS", "receive_append"]

"""cryptmail: a mail server that keeps every mailbox encrypted at rest, per user."""

__version__ = "0.1.0"

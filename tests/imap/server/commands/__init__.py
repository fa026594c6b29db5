"""Tests of cryptmail.imap.server.commands: the command handlers over a live listener."""

"""Tests of cryptmail.imap.server: listener, sessions, selected mailbox, FETCH loading."""

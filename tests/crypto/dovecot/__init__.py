"""Tests of cryptmail.crypto.dovecot against the Dovecot 2.3 vectors."""

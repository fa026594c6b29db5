"""Tests of cryptmail.imap, one folder per room (wire, message, server), and the helpers
they and the integration tests share: the live-server rig, the MIME corpus and Dovecot's
vectors."""

"""cryptmail.crypto.dovecot."""

"""cryptmail.imap."""

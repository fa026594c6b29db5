"""cryptmail.store."""

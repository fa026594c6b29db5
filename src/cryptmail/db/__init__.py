"""cryptmail.db."""

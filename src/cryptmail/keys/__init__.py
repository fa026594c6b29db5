"""cryptmail.keys."""

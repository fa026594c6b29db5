"""cryptmail.users."""

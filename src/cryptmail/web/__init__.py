"""cryptmail.web."""

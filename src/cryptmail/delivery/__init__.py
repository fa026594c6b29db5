"""cryptmail.delivery."""

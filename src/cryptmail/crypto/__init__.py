"""cryptmail.crypto."""

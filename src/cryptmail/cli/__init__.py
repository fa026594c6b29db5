"""The `cryptmail` command line; one module per noun."""

from cryptmail.cli._main import main

__all__ = ["main"]

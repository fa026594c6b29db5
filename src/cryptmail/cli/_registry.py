"""The list of noun modules. A noun module exposes `register(subparsers) -> None`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterator

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Order is the order of `cryptmail --help`.
_NOUNS = (
    "serve",
    "domain",
    "user",
    "alias",
    "key",
    "app_password",
    "mailbox",
    "store",
    "import_",
    "db",
    "dovecot",
)


def registrations() -> Iterator[Register]:
    for noun in _NOUNS:
        try:
            module = importlib.import_module(f"cryptmail.cli._{noun.rstrip('_')}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cryptmail.cli._{noun.rstrip('_')}":
                continue  # noun not built yet
            raise
        yield module.register

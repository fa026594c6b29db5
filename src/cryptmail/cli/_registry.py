"""The list of nouns. A noun module exposes `register(subparsers) -> None`.

Importing a noun module pulls in SQLAlchemy and the crypto codec (0.3 s here for
`user`, 0.7 s for `serve`, which imports every listener), so only the noun on the
command line is imported; every other noun gets a
stub sub-parser that carries just its name and help line, so `cryptmail --help` and
"invalid choice" still list them all. `tests/cli/test_registry.py` checks that each
help line here is the one the module registers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


@dataclass(frozen=True)
class Noun:
    command: str
    module: str
    help: str


# Order is the order of `cryptmail --help`.
NOUNS = (
    Noun("serve", "_serve", "run the LMTP, IMAP, web, SASL, POP3 and ManageSieve listeners"),
    Noun("domain", "_domain", "add and list mail domains"),
    Noun("user", "_user", "add and manage mail users and their keys"),
    Noun("alias", "_alias", "add, list and remove aliases"),
    Noun("key", "_key", "list, rotate and export a user's keys"),
    Noun(
        "app-password",
        "_app_password",
        "add, list and revoke app passwords (per-device passwords)",
    ),
    Noun("mailbox", "_mailbox", "list and export a user's folders"),
    Noun("sieve", "_sieve", "list, read, store and activate users' Sieve scripts"),
    Noun("store", "_store", "check the message store"),
    Noun("import", "_import", "import mail into cryptmail"),
    Noun("db", "_db", "database schema migrations"),
    Noun("dovecot", "_dovecot", "read Dovecot mail-crypt files (import and migration help)"),
    Noun("doctor", "_doctor", "check the installation and print what to fix"),
)

# Global options of `_main.build_parser` that take a value (to find the noun in argv).
_VALUE_OPTIONS = ("--data-dir", "--database-url", "--config")


def _module_name(noun: Noun) -> str:
    return f"cryptmail.cli.{noun.module}"


def available() -> list[Noun]:
    """Nouns whose module exists (found without importing it)."""
    return [n for n in NOUNS if importlib.util.find_spec(_module_name(n)) is not None]


def register_of(noun: Noun) -> Register:
    module = importlib.import_module(_module_name(noun))
    register: Register = module.register
    return register


def chosen_noun(argv: Sequence[str]) -> str | None:
    """The first positional word of `argv` (skipping global options and their values)."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word.startswith("-"):
            # argparse accepts unambiguous prefixes (`--data` for `--data-dir`).
            if "=" not in word and any(
                len(word) > 2 and option.startswith(word) for option in _VALUE_OPTIONS
            ):
                next(words, None)
            continue
        return word
    return None


def registrations(argv: Sequence[str] | None = None) -> Iterator[Register]:
    """One register function per available noun: the real one for the noun in `argv`
    (every noun when `argv` is None), a stub with the help line for the others."""
    wanted = None if argv is None else chosen_noun(argv)
    for noun in available():
        if argv is None or noun.command == wanted:
            yield register_of(noun)
        else:
            yield _stub(noun)


def _stub(noun: Noun) -> Register:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        sub.add_parser(noun.command, help=noun.help, add_help=False)

    return register

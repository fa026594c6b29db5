"""Entry point: parse global options, dispatch to the noun modules, map errors to exits.

Each noun module (`_user.py`, `_key.py`, `_dovecot.py`, ...) has a `register(sub)` that
adds its sub-commands; a sub-command's handler takes the parsed `argparse.Namespace`
and returns the exit code. A CryptmailError becomes one line on stderr and exit 1;
never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from cryptmail import __version__
from cryptmail.cli import _registry
from cryptmail.config import LOG_FORMAT
from cryptmail.errors import CryptmailError

log = logging.getLogger(__name__)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `argv`, only the noun it names is imported (see `_registry`)."""
    parser = argparse.ArgumentParser(
        prog="cryptmail",
        description="A mail server that keeps every mailbox encrypted at rest, per user.",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data directory (SQLite database, blobs); default ./cryptmail-data",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL overriding the embedded SQLite database",
    )
    parser.add_argument("--config", default=None, help="TOML configuration file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"cryptmail {__version__}")
    sub = parser.add_subparsers(dest="noun", metavar="COMMAND")
    sub.required = True
    for register in _registry.registrations(argv):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    # Everything a command creates (data dir, SQLite files, blobs, spools, exports) is
    # for the owner only: directories 0700, files 0600.
    umask = os.umask(0o077)
    try:
        return int(handler(args))
    except CryptmailError as exc:
        print(f"cryptmail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cryptmail: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    finally:
        os.umask(umask)

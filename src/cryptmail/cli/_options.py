"""Shared option handling for the noun modules: config from global options, stdin secrets."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cryptmail.config import Config, load_config
from cryptmail.errors import ConfigError
from cryptmail.secret import Password

DATABASE_URL_ENV = "CRYPTMAIL_DATABASE_URL"
DATABASE_URL_FILE_ENV = "CRYPTMAIL_DATABASE_URL_FILE"


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from --config, --data-dir and the database URL.

    The URL comes from --database-url, else $CRYPTMAIL_DATABASE_URL, else the file named
    by $CRYPTMAIL_DATABASE_URL_FILE, else the config file: the last three keep a DB
    password out of `ps`. Raises ConfigError.
    """
    env = os.environ if environ is None else environ
    path = Path(args.config) if getattr(args, "config", None) else None
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    url = _database_url(getattr(args, "database_url", None), env)
    if url:
        overrides["database.url"] = url
    return load_config(path, **overrides)


def _database_url(from_argv: str | None, env: Mapping[str, str]) -> str:
    if from_argv:
        return from_argv
    if env.get(DATABASE_URL_ENV):
        return env[DATABASE_URL_ENV].strip()
    url_file = env.get(DATABASE_URL_FILE_ENV)
    if url_file:
        try:
            return Path(url_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"${DATABASE_URL_FILE_ENV} names {url_file}, which cannot be read "
                f"({type(exc).__name__}); point it at a readable UTF-8 file holding the URL"
            ) from exc
    return ""


def read_stdin_lines(count: int) -> list[Password]:
    """Read `count` secrets, one per line, from standard input (never from argv)."""
    secrets: list[Password] = []
    for index in range(count):
        line = sys.stdin.readline()
        if not line:
            raise ConfigError(f"expected {count} line(s) on standard input, got {index}")
        secrets.append(Password.from_str(line.rstrip("\r\n")))
    return secrets

"""Shared option handling for the noun modules: config from global options, stdin secrets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptmail.config import Config, load_config
from cryptmail.errors import ConfigError
from cryptmail.secret import Password


def config_from_args(args: argparse.Namespace) -> Config:
    """Build the Config from --config, --data-dir and --database-url."""
    path = Path(args.config) if getattr(args, "config", None) else None
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        overrides["database.url"] = args.database_url
    return load_config(path, **overrides)


def read_stdin_lines(count: int) -> list[Password]:
    """Read `count` secrets, one per line, from standard input (never from argv)."""
    secrets: list[Password] = []
    for index in range(count):
        line = sys.stdin.readline()
        if not line:
            raise ConfigError(f"expected {count} line(s) on standard input, got {index}")
        secrets.append(Password.from_str(line.rstrip("\r\n")))
    return secrets

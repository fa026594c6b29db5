"""The database URL can come from the environment or a file, out of the process list."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cryptmail.cli._options import config_from_args
from cryptmail.errors import ConfigError

URL = "postgresql://cryptmail:s3cret@127.0.0.1/cryptmail"  # a test URL


def _args(database_url: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=None, data_dir=None, database_url=database_url)


def test_url_from_the_environment() -> None:
    config = config_from_args(_args(), {"CRYPTMAIL_DATABASE_URL": URL})
    assert config.database.url == URL


def test_url_from_a_file(tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text(URL + "\n")
    config = config_from_args(_args(), {"CRYPTMAIL_DATABASE_URL_FILE": str(url_file)})
    assert config.database.url == URL


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRYPTMAIL_DATABASE_URL_FILE"):
        config_from_args(_args(), {"CRYPTMAIL_DATABASE_URL_FILE": str(tmp_path / "missing")})


def test_the_command_line_wins() -> None:
    other = "sqlite:////tmp/x.db"
    config = config_from_args(_args(URL), {"CRYPTMAIL_DATABASE_URL": other})
    assert config.database.url == URL


def test_no_url_anywhere_keeps_the_embedded_database() -> None:
    assert config_from_args(_args(), {}).database.url == ""

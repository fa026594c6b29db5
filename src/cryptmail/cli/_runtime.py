"""What every admin command needs: the config, an engine on a ready schema, stdin secrets
and plain tables.

`run_with_engine` is the one place a command enters asyncio. The embedded SQLite
database is created and migrated on first use; a MariaDB or PostgreSQL database must be
migrated on purpose with `cryptmail db upgrade`, so a wrong URL never creates tables in
a database that was meant for something else.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeAlias

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._options import config_from_args, read_stdin_lines
from cryptmail.concurrency import configure_kdf_pool
from cryptmail.config import Config
from cryptmail.db import (
    create_engine,
    current_revision,
    end_driver_leftovers,
    head_revision,
    schema_is_current,
    upgrade,
)
from cryptmail.errors import ConfigError, KeySlotError, PasswordRejected
from cryptmail.keys import install_server_key, load_server_key
from cryptmail.logs import use_format
from cryptmail.secret import Password

log = logging.getLogger(__name__)

Work = Callable[[Config, AsyncEngine], Awaitable[int]]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Their DEBUG records carry SQL parameters (password hashes, sealed key slots) or, for
# botocore and urllib3, every S3 request's headers (the access key id, signatures): never
# below INFO. Alembic says "Context impl SQLiteImpl" at INFO on every run: only with -v.
_QUIET_LOGGERS = {
    name: logging.INFO
    for name in ("aiosqlite", "asyncpg", "aiomysql", "boto3", "botocore", "s3transfer", "urllib3")
}
_VERBOSE_ONLY_LOGGERS = ("alembic",)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


async def prepare_schema(engine: AsyncEngine, url: str) -> None:
    """Migrate an embedded SQLite database; demand an up-to-date schema elsewhere.

    Raises ConfigError when a server database has not been migrated.
    """
    if await schema_is_current(engine):
        return  # without Alembic, which a server would keep in memory for nothing
    head = head_revision()
    current = await current_revision(engine)
    if current == head:
        return
    if is_sqlite(url):
        log.info("migrating the SQLite database from %s to %s", current, head)
        await upgrade(engine)
        return
    found = "has no cryptmail schema" if current is None else f"is at revision {current}"
    raise ConfigError(
        f"the database {found}, this cryptmail needs {head}; "
        "run `cryptmail --database-url URL db upgrade` first"
    )


def _set_log_levels(args: argparse.Namespace, config: Config, *, server: bool) -> None:
    root = logging.getLogger()
    verbose = bool(getattr(args, "verbose", False))
    if server:
        # A server's log is its output: the configured level, one line per event.
        if not verbose:
            root.setLevel(config.log_level)
    elif root.level == logging.INFO:
        # Commands say what they did themselves; the library's INFO records (a failed
        # login by user id, a migration step) are for a server's log. -v shows all.
        root.setLevel(logging.WARNING)
    root_level = root.getEffectiveLevel()
    # Also for servers at DEBUG: the drivers' records would carry SQL parameters.
    for name, floor in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root_level))
    if not verbose:
        for name in _VERBOSE_ONLY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def set_up_process(args: argparse.Namespace, config: Config, *, server: bool) -> None:
    """The log's format and levels, and the size of the Argon2 pool, from `config`."""
    use_format(config.log_format)
    _set_log_levels(args, config, server=server)
    configure_kdf_pool(config.crypto.argon2.max_concurrent, config.crypto.argon2.max_queued)


def run_with_engine(
    args: argparse.Namespace,
    work: Work,
    *,
    check_schema: bool = True,
    server: bool = False,
    config: Config | None = None,
) -> int:
    """Build the config and set the process up (`set_up_process`), open the engine, make
    sure of the schema, run `work`, close. With `config` given, the caller has done the
    first two (`serve` does, before it forks its LMTP workers: done again after the fork,
    they wrote 1.2 MiB over pages the main process shared with them).

    The database's errors arrive translated by its engine (DatabaseUnavailable says
    to check database.url; no SQL, no URL). An OSError left is a file's: a path the
    command was given (an export's destination, an import's source) or one it made
    there, and becomes a ConfigError naming that path and the system's reason.
    """
    if config is None:
        config = config_from_args(args)
        set_up_process(args, config, server=server)

    async def main() -> int:
        engine = create_engine(config.database_url)
        try:
            # Made at the first start; LMTP workers read the same file.
            install_server_key(load_server_key(config.server_key_path))
            if check_schema:
                await prepare_schema(engine, config.database_url)
            return await work(config, engine)
        except BrokenPipeError:
            raise
        except OSError as exc:
            if exc.filename is None:
                raise
            raise ConfigError(_file_failure(exc)) from exc
        finally:
            await engine.dispose()
            # Else asyncio.run could wait for ever on a close the driver left behind.
            await end_driver_leftovers()

    return asyncio.run(main())


def _file_failure(exc: OSError) -> str:
    """`cannot use afile/sub: Not a directory`: the path and the system's reason."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"cannot use {paths}: {exc.strerror or type(exc).__name__}"


def read_secrets(
    args: argparse.Namespace, flag: str, prompts: Sequence[str], *, confirm_last: bool = False
) -> list[Password]:
    """One secret per prompt: lines of stdin when `--<flag>` is set, else asked on a TTY
    (where `confirm_last` asks for the last one, a new password, twice).

    Secrets never come from the command line, where `ps` and shell history would show
    them. Raises ConfigError when neither source is available or the two entries differ,
    PasswordRejected for an empty secret.
    """
    option = "--" + flag.replace("_", "-")
    if getattr(args, flag, False):
        secrets = read_stdin_lines(len(prompts))
    elif sys.stdin.isatty():
        secrets = [Password.from_str(getpass.getpass(f"{prompt}: ")) for prompt in prompts]
        if (
            confirm_last
            and Password.from_str(getpass.getpass(f"{prompts[-1]} again: ")) != (secrets[-1])
        ):
            raise ConfigError(f"the two entries of {prompts[-1]} differ; nothing was changed")
    else:
        raise ConfigError(
            f"give {' and '.join(prompts)} on standard input, one per line, with {option}"
        )
    for prompt, secret in zip(prompts, secrets, strict=True):
        if not len(secret):
            raise PasswordRejected(f"{prompt} is empty")
    return secrets


RECOVERY_WARNING = (
    "Store this recovery code somewhere safe now (on paper, or in a password manager "
    "the user controls). It is the only way into the mailbox if the password is "
    "forgotten; without it the mail cannot be recovered by anyone."
)


def say(message: str) -> None:
    """A status line for the person at the terminal (stderr, so stdout stays data)."""
    print(message, file=sys.stderr)


def show_secret(secret: str, label: str, warning: str) -> None:
    """Print a one-time secret alone on stdout, with its label and warning on stderr."""
    say(f"{label} (shown only this once):")
    print(secret, flush=True)
    say(warning)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; an empty table prints only its header."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def wrong_credential(what: str, email: str) -> KeySlotError:
    """The admin-facing error for a credential that did not unlock `email`'s key."""
    return KeySlotError(f"{what} does not unlock the key of {email}; nothing was changed")

"""`cryptmail doctor`: check an installation and print what to fix.

Each check prints OK, WARN or FAIL, and under anything not OK the fix. Exit code 1 when
a check FAILs (a monitoring job or an install script can act on it), else 0. It checks
what serve needs but does not change anything: the configuration, the database
(reachable, migrated), the blob store (writable), the TLS certificates (valid, not near
expiry, private keys), file modes, and Postfix's main.cf (LMTP and SASL pointing at this
cryptmail). Run it as the user serve runs as, so that the file checks see what serve
sees: `sudo -u cryptmail cryptmail --config /etc/cryptmail/cryptmail.toml doctor`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from cryptmail.cli._doctor_checks import (
    Finding,
    check_blob_store,
    check_certificates,
    check_database,
    check_files,
    check_postfix,
)
from cryptmail.cli._options import config_from_args
from cryptmail.cli._runtime import SubParsers
from cryptmail.config import Config
from cryptmail.db import create_engine
from cryptmail.errors import ConfigError

DEFAULT_LMTP = "127.0.0.1:2424"  # as `serve` (cli/_serve.py), without importing serve


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check the installation and print what to fix",
        description="Check the configuration, database, blob store, TLS certificates, file "
        "modes and Postfix's settings; print OK, WARN or FAIL and the fix. Exit 1 on FAIL.",
    )
    parser.add_argument(
        "--postfix-config",
        metavar="DIR",
        default="/etc/postfix",
        help="Postfix's configuration directory (main.cf); default /etc/postfix",
    )
    parser.add_argument(
        "--warn-days",
        type=int,
        default=21,
        metavar="DAYS",
        help="warn when a certificate expires within DAYS days (default 21)",
    )
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    # Alembic tells of its SQLite context at INFO: noise between the findings.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config_path = Path(args.config) if args.config else None
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        _print([Finding("FAIL", "config", str(exc), "fix the file, then run doctor again")])
        return 1
    where = str(config_path) if config_path else "no --config: the built-in defaults"
    findings = [Finding("OK", "config", f"loaded ({where})")]
    findings += asyncio.run(_async_checks(config))
    findings += check_certificates(config, args.warn_days)
    findings += check_files(config, config_path)
    lmtp = config.lmtp.listen or DEFAULT_LMTP
    findings += check_postfix(config, Path(args.postfix_config), lmtp)
    _print(findings)
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "WARN" for f in findings)
    print(f"{failed} failed, {warned} warnings, {len(findings) - failed - warned} ok")
    return 1 if failed else 0


async def _async_checks(config: Config) -> list[Finding]:
    engine = create_engine(config.database_url)
    try:
        return await check_database(engine) + await check_blob_store(config)
    finally:
        await engine.dispose()


def _print(findings: list[Finding]) -> None:
    for finding in findings:
        print(f"{finding.level:<4} {finding.check}: {finding.detail}")
        if finding.fix and finding.level != "OK":
            print(f"     fix: {finding.fix}")
    sys.stdout.flush()

"""The checks `cryptmail doctor` runs, each returning `Finding`s: OK, WARN or FAIL, with
what to do about anything not OK.

They read the installation as it is: the database is not migrated (that is what they
report); the only writes are a probe file in the blob directory, removed at once, and
what opening the embedded SQLite database and the blob directory makes when missing.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import ssl
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.db import current_revision, head_revision
from cryptmail.errors import CryptmailError
from cryptmail.sockets import parse_address
from cryptmail.store import filing_backlog
from cryptmail.store.blobs import LocalBlobStore, open_blob_store

Level = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str
    fix: str = ""


async def check_database(engine: AsyncEngine) -> list[Finding]:
    """Reachable, and migrated to this version's head."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await current_revision(engine)
    except Exception as exc:  # any failure to reach it is the finding
        return [
            Finding(
                "FAIL",
                "database",
                f"cannot connect ({type(exc).__name__})",
                "check database.url (host, port, user, password) and that the server runs",
            )
        ]
    head = head_revision()
    if current != head:
        found = "no cryptmail schema" if current is None else f"schema revision {current}"
        return [
            Finding(
                "FAIL",
                "database",
                f"reachable, but it has {found}; this cryptmail needs {head}",
                "run `cryptmail --config FILE db upgrade` (back the database up first)",
            )
        ]
    messages, users = await filing_backlog(engine)
    return [
        Finding("OK", "database", f"reachable, schema at {head}"),
        # Informational: mail Sieve filed into users' own folders waits, sealed, in a
        # hidden folder until each user's next login (docs/security.md).
        Finding(
            "OK",
            "sieve filing",
            f"{messages} message(s) of {users} user(s) wait for the user's next login",
        ),
    ]


async def check_blob_store(config: Config) -> list[Finding]:
    """The blob store can be written now: a probe file in the local backend's temporary
    directory (written, fsynced, removed), or the S3 backend's own readiness call."""
    try:
        blobs = open_blob_store(config)
        if isinstance(blobs, LocalBlobStore):
            _probe_write(blobs.root / "tmp")
        else:
            await blobs.ready()
    except (CryptmailError, OSError) as exc:
        where = config.blob_path if config.blobs.backend == "local" else config.blobs.s3_bucket
        return [
            Finding(
                "FAIL",
                "blob store",
                f"{where} cannot be written ({exc})",
                "make the blob directory exist and belong to the user serve runs as "
                "(mode 700), or check the S3 endpoint, bucket and keys",
            )
        ]
    return [Finding("OK", "blob store", f"{config.blobs.backend} backend writable")]


def _probe_write(directory: Path) -> None:
    if not directory.is_dir():
        raise OSError(f"{directory} does not exist")
    probe = directory / f".doctor-probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"probe")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def check_certificates(config: Config, warn_days: int) -> list[Finding]:
    """Each certificate cryptmail presents: readable, matching its key, not expired and
    not within `warn_days` of expiry; its key file private."""
    pairs: list[tuple[str, Path, Path]] = []
    if config.imap.tls_cert:
        pairs.append(("IMAP/POP3", Path(config.imap.tls_cert), Path(config.imap.tls_key)))
    else:
        cert = config.data_path / "imap-selfsigned.pem"
        if cert.exists():
            pairs.append(
                ("IMAP/POP3 (self-signed)", cert, config.data_path / "imap-selfsigned.key")
            )
    if config.web.tls_cert:
        pairs.append(("web", Path(config.web.tls_cert), Path(config.web.tls_key)))
    if not pairs:
        return [Finding("OK", "TLS", "no certificate configured or made yet")]
    findings: list[Finding] = []
    for what, cert_path, key_path in pairs:
        findings += _check_certificate(f"TLS {what}", cert_path, key_path, warn_days)
    return findings


def _check_certificate(
    check: str, cert_path: Path, key_path: Path, warn_days: int
) -> list[Finding]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(cert_path), str(key_path)
        )
    except (OSError, ValueError, ssl.SSLError) as exc:
        return [
            Finding(
                "FAIL",
                check,
                f"{cert_path} with {key_path} cannot be loaded ({exc})",
                "point the tls_cert/tls_key settings at a PEM certificate and its key",
            )
        ]
    findings = _check_private_file(check + " key", key_path)
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    ends = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    renew = "renew it (certbot renew), then `systemctl reload cryptmail` (SIGHUP)"
    if left.total_seconds() <= 0:
        findings.append(Finding("FAIL", check, f"{cert_path} expired on {ends}", renew))
    elif left.days < warn_days:
        findings.append(
            Finding("WARN", check, f"{cert_path} expires in {left.days} days ({ends})", renew)
        )
    else:
        findings.append(Finding("OK", check, f"{cert_path} valid until {ends}"))
    return findings


def _check_private_file(check: str, path: Path) -> list[Finding]:
    """A file only its owner may read (keys, secrets)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return [
            Finding(
                "FAIL",
                check,
                f"{path}: {exc.strerror}",
                "fix the path in the config, or restore the file from the backup",
            )
        ]
    if mode & 0o077:
        return [
            Finding(
                "FAIL",
                check,
                f"{path} has mode {mode:o}: others on this machine can read it",
                f"chmod 600 {path}",
            )
        ]
    return [Finding("OK", check, f"{path} mode {mode:o}")]


def check_files(config: Config, config_path: Path | None) -> list[Finding]:
    """Modes: the data directory 700, the server key (and admin token) 600, the
    configuration file not world-readable (it may hold the database password)."""
    findings: list[Finding] = []
    data = config.data_path
    try:
        mode = stat.S_IMODE(data.stat().st_mode)
    except OSError as exc:
        findings.append(
            Finding("FAIL", "data directory", f"{data}: {exc.strerror}", "check data_dir")
        )
    else:
        if mode & 0o077:
            findings.append(
                Finding(
                    "WARN",
                    "data directory",
                    f"{data} has mode {mode:o}: others may list or read it",
                    f"chmod 700 {data}",
                )
            )
        else:
            findings.append(Finding("OK", "data directory", f"{data} mode {mode:o}"))
    findings += _check_private_file("server key", config.server_key_path)
    if config.web.admin_token_file:
        findings += _check_private_file("admin token", Path(config.web.admin_token_file))
    if config_path is not None:
        mode = stat.S_IMODE(config_path.stat().st_mode)
        if mode & 0o007:
            findings.append(
                Finding(
                    "WARN",
                    "config file",
                    f"{config_path} has mode {mode:o}: every local user can read it",
                    f"chmod 640 {config_path} (group: the one serve runs as)",
                )
            )
        else:
            findings.append(Finding("OK", "config file", f"{config_path} mode {mode:o}"))
    return findings


def check_postfix(config: Config, postfix_dir: Path, lmtp_address: str) -> list[Finding]:
    """Postfix's main.cf (read with `postconf -c DIR`) hands mail to our LMTP listener
    and, when SASL is on, asks our SASL listener."""
    postconf = shutil.which("postconf")
    if postconf is None or not (postfix_dir / "main.cf").exists():
        return [
            Finding(
                "WARN",
                "postfix",
                f"not checked: no postconf, or no main.cf in {postfix_dir}",
                "give --postfix-config DIR where Postfix keeps main.cf",
            )
        ]
    names = ["virtual_transport", "mailbox_transport", "smtpd_sasl_type", "smtpd_sasl_path"]
    names.append("queue_directory")
    done = subprocess.run(  # noqa: S603 - postconf from PATH, fixed arguments
        [postconf, "-c", str(postfix_dir), "-h", *names],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return [Finding("FAIL", "postfix", f"postconf failed: {done.stderr.strip()}", "")]
    values = dict(zip(names, done.stdout.splitlines(), strict=False))
    queue = Path(values.get("queue_directory", "/var/spool/postfix"))
    findings: list[Finding] = []
    ours = _endpoint(lmtp_address, queue)
    transports = [values.get("virtual_transport", ""), values.get("mailbox_transport", "")]
    if any(_endpoint(_strip_transport(value), queue) == ours for value in transports):
        findings.append(Finding("OK", "postfix LMTP", f"delivers to {lmtp_address}"))
    else:
        findings.append(
            Finding(
                "FAIL",
                "postfix LMTP",
                f"virtual_transport = {transports[0] or '(unset)'}, not cryptmail's LMTP "
                f"({lmtp_address})",
                f"postconf -e virtual_transport={_postfix_form(lmtp_address, 'lmtp:')}; "
                "postfix reload",
            )
        )
    if config.sasl.listen:
        sasl_type = values.get("smtpd_sasl_type", "")
        path = values.get("smtpd_sasl_path", "")
        if sasl_type == "dovecot" and _endpoint(path, queue) == _endpoint(
            config.sasl.listen, queue
        ):
            findings.append(Finding("OK", "postfix SASL", f"asks {config.sasl.listen}"))
        else:
            findings.append(
                Finding(
                    "FAIL",
                    "postfix SASL",
                    f"smtpd_sasl_type = {sasl_type or '(unset)'}, smtpd_sasl_path = "
                    f"{path or '(unset)'}: not cryptmail's SASL ({config.sasl.listen})",
                    "postconf -e smtpd_sasl_type=dovecot "
                    f"smtpd_sasl_path={_postfix_form(config.sasl.listen, '')}; postfix reload",
                )
            )
    return findings


def _strip_transport(value: str) -> str:
    return value.removeprefix("lmtp:") if value.startswith("lmtp:") else "(not lmtp)"


def _endpoint(value: str, queue: Path) -> str:
    """One spelling of an address, from cryptmail's (`unix:/p`, `HOST:PORT`) or
    Postfix's (`inet:HOST:PORT`, `[HOST]:PORT`, `unix:private/x` under the queue
    directory, `private/x`)."""
    value = value.strip()
    if value.startswith("inet:"):
        value = value[len("inet:") :]
    if value.startswith("unix:") or ("/" in value and ":" not in value):
        path = Path(value.removeprefix("unix:"))
        return "unix:" + str(path if path.is_absolute() else queue / path)
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    return f"inet:{'127.0.0.1' if host == 'localhost' else host}:{port}"


def _postfix_form(address: str, prefix: str) -> str:
    target = parse_address(address)
    if isinstance(target, tuple):
        return f"{prefix}inet:{target[0]}:{target[1]}"
    return f"{prefix}unix:{target}"

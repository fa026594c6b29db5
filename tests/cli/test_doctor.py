"""`cryptmail doctor` on a good installation and on broken ones: an unmigrated database,
a blob directory serve's user cannot write, expired and nearly expired certificates, a
world-readable key, and a Postfix main.cf (read by the real `postconf -c DIR`) that
delivers and authenticates elsewhere."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptmail.db import create_engine, upgrade
from cryptmail.keys import server_key
from tls_certs import write_certificate

pytestmark = pytest.mark.skipif(shutil.which("postconf") is None, reason="needs postconf")


@dataclass
class Installation:
    root: Path
    data: Path
    config: Path
    postfix: Path
    cert: Path
    key: Path

    def doctor(self, *, as_service_user: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "cryptmail", "--config", str(self.config), "doctor"]
        argv += ["--postfix-config", str(self.postfix)]
        if as_service_user and os.geteuid() == 0:
            # root writes anywhere; without the capabilities that override file modes it
            # meets them as serve's unprivileged User= does.
            argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def lines(self, done: subprocess.CompletedProcess[str], level: str) -> list[str]:
        return [line for line in done.stdout.splitlines() if line.startswith(level)]


def _main_cf(lmtp: str, sasl_path: str) -> str:
    return f"virtual_transport = {lmtp}\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = {sasl_path}\n"


@pytest.fixture
def good(tmp_path: Path) -> Installation:
    """Everything right: migrated SQLite, server key 600, a certificate good for 90 days
    with its key 600, config 640, main.cf delivering to our LMTP and asking our SASL."""
    root = tmp_path / "install"
    data = root / "data"
    data.mkdir(parents=True, mode=0o700)
    shutil.copy2(server_key().path, data / "server.key")
    os.chmod(data / "server.key", 0o600)

    async def migrate() -> None:
        engine = create_engine(f"sqlite:///{data / 'cryptmail.db'}")
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    (data / "blobs" / "tmp").mkdir(parents=True, mode=0o700)
    cert, key = root / "fullchain.pem", root / "privkey.pem"
    write_certificate(cert, key, "mail.example.org", days_left=90)
    config = root / "cryptmail.toml"
    config.write_text(
        f'data_dir = "{data}"\n[lmtp]\nlisten = "127.0.0.1:2424"\n'
        '[sasl]\nlisten = "unix:/var/spool/postfix/private/cryptmail-auth"\n'
        f'[imap]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    os.chmod(config, 0o640)
    postfix = root / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text(_main_cf("lmtp:inet:127.0.0.1:2424", "private/cryptmail-auth"))
    return Installation(root, data, config, postfix, cert, key)


def test_a_good_installation_passes(good: Installation) -> None:
    done = good.doctor(as_service_user=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not good.lines(done, "FAIL") and not good.lines(done, "WARN"), done.stdout
    for check in ("database", "sieve filing", "blob store", "TLS IMAP/POP3", "server key",
                  "postfix LMTP", "postfix SASL", "config file"):  # fmt: skip
        assert any(line.startswith(f"OK   {check}") for line in done.stdout.splitlines()), check


def test_an_unmigrated_database_fails_with_the_upgrade_command(good: Installation) -> None:
    (good.data / "cryptmail.db").unlink()
    done = good.doctor()
    assert done.returncode == 1
    (line,) = good.lines(done, "FAIL")
    assert "database" in line and "no cryptmail schema" in line
    assert "db upgrade" in done.stdout
    with sqlite3.connect(good.data / "cryptmail.db") as db:  # not migrated behind our back
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_blob_directory_serve_cannot_write_fails(good: Installation) -> None:
    os.chmod(good.data / "blobs" / "tmp", 0o500)
    done = good.doctor(as_service_user=True)
    assert done.returncode == 1, done.stdout
    (line,) = good.lines(done, "FAIL")
    assert line.startswith("FAIL blob store") and "cannot be written" in line


def test_an_expired_certificate_fails(good: Installation) -> None:
    write_certificate(good.cert, good.key, "mail.example.org", days_left=-2)
    done = good.doctor()
    assert done.returncode == 1
    (line,) = good.lines(done, "FAIL")
    assert "expired on" in line and "systemctl reload cryptmail" in done.stdout


def test_a_certificate_near_expiry_warns(good: Installation) -> None:
    write_certificate(good.cert, good.key, "mail.example.org", days_left=5)
    done = good.doctor()
    assert done.returncode == 0  # a warning, not a failure
    (line,) = good.lines(done, "WARN")
    assert "expires in 4 days" in line or "expires in 5 days" in line


def test_a_world_readable_key_fails(good: Installation) -> None:
    os.chmod(good.key, 0o644)
    done = good.doctor()
    assert done.returncode == 1
    (line,) = good.lines(done, "FAIL")
    assert "others on this machine can read it" in line
    assert f"chmod 600 {good.key}" in done.stdout


def test_postfix_pointing_elsewhere_fails_with_the_postconf_fix(good: Installation) -> None:
    (good.postfix / "main.cf").write_text(
        _main_cf("lmtp:unix:private/dovecot-lmtp", "private/auth")
    )
    done = good.doctor()
    assert done.returncode == 1
    failed = good.lines(done, "FAIL")
    assert [line.split(":")[0] for line in failed] == ["FAIL postfix LMTP", "FAIL postfix SASL"]
    assert "virtual_transport=lmtp:inet:127.0.0.1:2424" in done.stdout
    assert "smtpd_sasl_path=unix:/var/spool/postfix/private/cryptmail-auth" in done.stdout


def test_postfix_spellings_of_our_addresses_are_understood(good: Installation) -> None:
    (good.postfix / "main.cf").write_text(
        _main_cf("lmtp:[127.0.0.1]:2424", "/var/spool/postfix/private/cryptmail-auth")
    )
    done = good.doctor()
    assert done.returncode == 0, done.stdout


def test_a_bad_config_file_fails_first(good: Installation) -> None:
    good.config.write_text("[imap]\nlisten_tls = 5\n")
    done = good.doctor()
    assert done.returncode == 1
    (line,) = good.lines(done, "FAIL")
    assert line.startswith("FAIL config") and "imap.listen_tls must be a string" in line

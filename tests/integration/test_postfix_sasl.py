"""SMTP AUTH through cryptmail: the real Postfix (`smtpd_sasl_type = dovecot`) asks
`cryptmail serve --sasl` about each AUTH its submission clients send; swaks is the
client. A right password and an app password pass, a wrong one and a revoked app
password fail at once, and the authenticated mail goes on through LMTP to its user.

swaks reads its options, the password among them, from a mode 0600 file: no password
on a command line.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.db import create_engine
from cryptmail.keys import add_app_password, revoke_app_password, unlock_account
from cryptmail.secret import Password

from .conftest import PostfixFactory
from .cryptmail_server import (
    CRYPTO,
    PASSWORD,
    CryptmailServer,
    db_url,
    make_users,
    read_all,
)
from .servers._binaries import find_binary

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    served = CryptmailServer(data_dir, sasl=True)
    served.start()
    yield served
    served.stop()


def _swaks(
    tmp_path: Path, port: int, user: str, password: str, mechanism: str, subject: str
) -> int:
    options = tmp_path / "swaks.conf"
    options.touch(mode=0o600)
    options.write_text(
        "\n".join(
            [
                f"--server 127.0.0.1:{port}",
                f"--from {user}",
                f"--to {BOB}",
                f"--auth {mechanism}",
                f"--auth-user {user}",
                f"--auth-password {password}",
                f"--header Subject: {subject}",
                "--body sent with SMTP AUTH",
                "",
            ]
        )
    )
    swaks = find_binary("swaks", package="swaks")
    done = subprocess.run(
        [swaks, "--config", str(options)], capture_output=True, timeout=60, check=False
    )
    options.unlink()
    return done.returncode


def _app_password(data_dir: Path, name: str, *, revoke: bool = False) -> str:
    async def work() -> str:
        engine = create_engine(db_url(data_dir))
        account, _ = await unlock_account(engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
        secret = ""
        if revoke:
            await revoke_app_password(engine, account.user.id, name, account=account)
        else:
            secret = await add_app_password(engine, account, name, CRYPTO)
        await engine.dispose()
        return secret

    return asyncio.run(work())


def test_postfix_submission_authenticates_through_cryptmail(
    server: CryptmailServer, postfix_factory: PostfixFactory, tmp_path: Path
) -> None:
    postfix = postfix_factory(
        domains=["example.org"],
        lmtp=server.lmtp,
        settings={
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": f"inet:127.0.0.1:{server.sasl_port}",
            "smtpd_tls_security_level": "none",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        },
    )
    port = postfix.smtp_port
    assert _swaks(tmp_path, port, ALICE, PASSWORD, "PLAIN", "by password") == 0
    assert _swaks(tmp_path, port, ALICE, PASSWORD, "LOGIN", "by LOGIN") == 0
    # swaks exits 28 when the AUTH transaction fails.
    assert _swaks(tmp_path, port, ALICE, "not the password", "PLAIN", "wrong") == 28
    app = _app_password(server.data_dir, "phone")
    assert _swaks(tmp_path, port, ALICE, app, "PLAIN", "by app password") == 0
    _app_password(server.data_dir, "phone", revoke=True)
    assert _swaks(tmp_path, port, ALICE, app, "PLAIN", "revoked") == 28

    postfix.wait_queue_empty(timeout=60)
    log = postfix.log()
    assert "sasl_method=PLAIN, sasl_username=alice@example.org" in log
    assert "sasl_method=LOGIN, sasl_username=alice@example.org" in log
    assert log.count("SASL PLAIN authentication failed") == 2
    assert "sasl_username=alice@example.org" in log.split("authentication failed")[1]
    subjects = sorted(
        message.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
        for message in read_all(server.data_dir, BOB)["INBOX"]
    )
    assert subjects == [b"by LOGIN", b"by app password", b"by password"]
    serve_log = server.log_path.read_text()
    for secret in (PASSWORD, app, "not the password"):
        assert secret not in serve_log

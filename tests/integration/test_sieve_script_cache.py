"""The LMTP workers' cache of compiled Sieve scripts (delivery/_sieve.py) on a live
`cryptmail serve` with two LMTP worker processes and ManageSieve: after a script is
replaced, another made active, or none is active, over ManageSieve (sievelib's
client), the very next delivery runs what is active now, whichever worker takes it,
while several users receive on several connections at once from one address."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sievelib.managesieve import Client

from .cryptmail_server import PASSWORD, CryptmailServer, make_users, read_all

pytestmark = pytest.mark.integration

USERS = ("alice@example.org", "bob@example.org", "carol@example.org")
CONNECTIONS = 6  # per round, in parallel: more than the two workers, so both take some
PER_CONNECTION = 3


def _file_into(folder: str) -> str:
    return (
        'require "fileinto";\r\n'
        f'if header :contains "subject" "tagged" {{ fileinto "{folder}"; }}\r\n'
    )


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    served = CryptmailServer(data_dir, managesieve=True, config="[lmtp]\nprocesses = 2\n")
    served.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(data_dir / "imap-selfsigned.pem"))
    yield served
    served.stop()


def _manage(server: CryptmailServer, user: str) -> Client:
    sieve = Client("127.0.0.1", server.managesieve_port)
    assert sieve.connect(user, PASSWORD, starttls=True, authmech="PLAIN"), "login failed"
    return sieve


def _round(server: CryptmailServer, label: str) -> None:
    """CONNECTIONS parallel LMTP connections, each sending PER_CONNECTION tagged
    messages to every user (one recipient per transaction)."""

    def connection(index: int) -> None:
        with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
            for n in range(PER_CONNECTION):
                for user in USERS:
                    message = (
                        f"From: x@example.net\r\nSubject: tagged {label} {index}.{n}\r\n"
                        f"Message-ID: <{label}.{index}.{n}.{user}@example.net>\r\n\r\nbody\r\n"
                    )
                    lmtp.sendmail("x@example.net", [user], message.encode())

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(connection, range(CONNECTIONS)))


def _where(server: CryptmailServer, user: str, label: str) -> dict[str, int]:
    """How many of the round's messages are in each folder of `user`."""
    found: dict[str, int] = {}
    for folder, messages in read_all(server.data_dir, user).items():
        count = sum(f"Subject: tagged {label} ".encode() in m for m in messages)
        if count:
            found[folder] = count
    return found


def test_a_changed_script_is_run_by_the_next_delivery_in_every_worker(
    server: CryptmailServer,
) -> None:
    alice, bob, carol = USERS
    each = CONNECTIONS * PER_CONNECTION
    for user in USERS:
        sieve = _manage(server, user)
        assert sieve.putscript("rules", _file_into("Junk"))
        assert sieve.setactive("rules")
        sieve.logout()
    _round(server, "one")  # every worker compiles and caches the first scripts
    for user in USERS:
        assert _where(server, user, "one") == {"Junk": each}

    # alice replaces the active script in place; bob makes another one active;
    # carol deactivates hers. Nothing else happens between the change and the next round.
    sieve = _manage(server, alice)
    assert sieve.putscript("rules", _file_into("Archive"))
    sieve.logout()
    sieve = _manage(server, bob)
    assert sieve.putscript("other", _file_into("Trash"))
    assert sieve.setactive("other")
    sieve.logout()
    sieve = _manage(server, carol)
    assert sieve.setactive("")
    sieve.logout()
    _round(server, "two")
    assert _where(server, alice, "two") == {"Archive": each}
    assert _where(server, bob, "two") == {"Trash": each}
    assert _where(server, carol, "two") == {"INBOX": each}

    # Back to the first script: a version a worker compiled before is no stale answer.
    sieve = _manage(server, alice)
    assert sieve.putscript("rules", _file_into("Junk"))
    sieve.logout()
    _round(server, "three")
    assert _where(server, alice, "three") == {"Junk": each}
    assert _where(server, bob, "three") == {"Trash": each}

"""How long a failing login takes, by kind of address: does timing tell them apart?

    python bench/login_timing.py [--samples N]

Runs `cryptmail serve` (IMAP and web) on a fresh SQLite data dir with four kinds of
address: one nobody has, a user with keys, and two ISPmail rows without keys yet (their
keys are made at the first login), one with a bcrypt hash (`{BLF-CRYPT}`, cost 10) and
one with `{SHA512-CRYPT}` (5,000 rounds). Each gets a wrong password over IMAP LOGIN and
over `POST /api/v1/password`, N times (default 20), the kinds taken in turn so that a
slow phase of a shared machine lands on each of them. Prints the median and range in
milliseconds per kind and protocol. The throttle is opened wide so that every attempt
does the full work. No asserts: numbers only (docs/security.md, "Login timing").
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from _servers import PASSWORD, cryptmail_server, make_users

from cryptmail.db import create_engine
from cryptmail.secret import Password
from cryptmail.users import add_user, hash_password

KINDS = {
    "unknown address": "nobody@example.org",
    "user with keys": "keyed@example.org",
    "no keys, BLF-CRYPT": "bcrypt@example.org",
    "no keys, SHA512-CRYPT": "sha512@example.org",
}
WRONG = "wrong password 1"
CONFIG = """\
[crypto.argon2]
memory_kib = 19456
[auth]
address_burst = 100000
client_burst = 100000
[web]
secure_cookies = false
"""


async def _add_ispmail_rows(data_dir: Path) -> None:
    engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
    async with engine.begin() as conn:
        secret = Password.from_str(PASSWORD)
        await add_user(
            conn, KINDS["no keys, BLF-CRYPT"], hash_password(secret, "BLF-CRYPT", bcrypt_cost=10)
        )
        await add_user(conn, KINDS["no keys, SHA512-CRYPT"], hash_password(secret, "SHA512-CRYPT"))
    await engine.dispose()


def _imap_login(port: int, address: str) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        started = time.perf_counter()
        sock.sendall(f'a LOGIN "{address}" "{WRONG}"\r\n'.encode())
        while not (line := replies.readline()).startswith(b"a "):
            pass
        elapsed = time.perf_counter() - started
        if not line.startswith(b"a NO"):
            raise RuntimeError(f"IMAP LOGIN answered {line!r}")
        sock.sendall(b"b LOGOUT\r\n")
    return elapsed


def _api_password(port: int, address: str) -> float:
    body = json.dumps({"address": address, "old": WRONG, "new": "a new password 1"})
    connection = http.client.HTTPConnection("127.0.0.1", port)
    try:
        started = time.perf_counter()
        connection.request("POST", "/api/v1/password", body, {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 401:
        raise RuntimeError(f"POST /api/v1/password answered {response.status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        make_users(data_dir, {KINDS["user with keys"]: 2})
        asyncio.run(_add_ispmail_rows(data_dir))
        config = Path(tmp) / "cryptmail.toml"
        config.write_text(CONFIG)
        with cryptmail_server(data_dir, "imap", "web", config=config) as (_pid, ports):
            probes = {
                "IMAP LOGIN": (_imap_login, ports["imap"]),
                "POST /api/v1/password": (_api_password, ports["web"]),
            }
            for name, (probe, port) in probes.items():
                for address in KINDS.values():  # warm up: pools, caches, connections
                    probe(port, address)
                times: dict[str, list[float]] = {kind: [] for kind in KINDS}
                for _ in range(args.samples):
                    for kind, address in KINDS.items():
                        times[kind].append(probe(port, address) * 1000)
                print(f"{name}, wrong password, {args.samples} samples each (ms):")
                for kind, values in times.items():
                    print(
                        f"  {kind:24} median {statistics.median(values):6.1f}"
                        f"   range {min(values):6.1f} - {max(values):6.1f}"
                    )


if __name__ == "__main__":
    main()

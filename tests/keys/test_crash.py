"""Kill `cryptmail user passwd` and `user recover` at every step: afterwards exactly the
old or the new password works, the hash agrees with the key slot, and a wrong password or
code never changed anything.

Each run is a real process (`python -m cryptmail`) that SIGKILLs itself at the named
checkpoint (CRYPTMAIL_CRASH_AT, see cryptmail.keys._faults), or is killed from outside
at a random moment.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import create_user, recover, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.users import add_domain, get_user, verify_password
from keys.conftest import pw, snapshot

ALICE = "alice@example.org"
OLD = "the old password"
NEW = "the new password"
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
CONFIG = "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"

REKEY_CHECKPOINTS = ["rekey:after-generation", "rekey:after-keys", "rekey:after-slots"]
PASSWD_CHECKPOINTS = [
    "password:before-transaction",
    *REKEY_CHECKPOINTS,
    "password:after-slot",
    "password:after-hash",
    "password:before-commit",
    "password:after-commit",
]
# recover re-keys and re-locks the password slot through the same steps as a password
# change.
RECOVER_CHECKPOINTS = [
    "recover:before-transaction",
    *REKEY_CHECKPOINTS,
    "password:after-slot",
    "password:after-hash",
    "recover:before-commit",
    "recover:after-commit",
]


@dataclass(frozen=True)
class Template:
    path: Path
    recovery_code: str


def _url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'cryptmail.db'}"


async def _make_template(data_dir: Path) -> str:
    engine = create_engine(_url(data_dir))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        new = await create_user(engine, ALICE, pw(OLD), CRYPTO)
    finally:
        await engine.dispose()
    assert new.recovery_code is not None
    return new.recovery_code


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    path = tmp_path_factory.mktemp("template")
    (path / "cryptmail.toml").write_text(CONFIG)
    return Template(path, asyncio.run(_make_template(path)))


@pytest.fixture
def data_dir(template: Template, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(template.path, copy)
    return copy


def _command(data_dir: Path, *args: str) -> list[str]:
    config = str(data_dir / "cryptmail.toml")
    return [
        sys.executable,
        "-m",
        "cryptmail",
        "--config",
        config,
        "--data-dir",
        str(data_dir),
        *args,
    ]


def run_cli(data_dir: Path, stdin: str, *args: str, crash_at: str = "") -> int:
    env = dict(os.environ, CRYPTMAIL_CRASH_AT=crash_at)
    done = subprocess.run(
        _command(data_dir, *args), input=stdin.encode(), env=env, capture_output=True, timeout=60
    )
    return done.returncode


async def _state(data_dir: Path, old: str, new: str) -> str:
    """'old' or 'new': which password works. Fails unless exactly one does and the
    stored hash agrees with the slot."""
    engine = create_engine(_url(data_dir))
    try:
        async with engine.connect() as conn:
            user = await get_user(conn, ALICE)
            slots = await slots_of(conn, user.id)
        password_slot = next(s for s in slots if s.kind == "password")
        # Checked before any login, which would adopt a changed hash.
        assert password_slot.hash_fingerprint == hash_fingerprint(user.password_hash)
        hash_says = [
            label
            for label, p in (("old", old), ("new", new))
            if verify_password(user.password_hash, pw(p))
        ]
        slot_says = []
        for label, password in (("old", old), ("new", new), ("wrong", "wrong " + old)):
            try:
                await unlock_account(engine, ALICE, pw(password), CRYPTO)
            except AuthenticationFailed:
                continue
            slot_says.append(label)
    finally:
        await engine.dispose()
    assert len(slot_says) == 1, slot_says
    assert hash_says == slot_says
    return slot_says[0]


async def _code_works(data_dir: Path, code: str) -> bool:
    engine = create_engine(_url(data_dir))
    try:
        await recover(engine, ALICE, code, pw("set by the test"), CRYPTO)
    except AuthenticationFailed:
        return False
    finally:
        await engine.dispose()
    return True


@pytest.mark.parametrize("checkpoint", PASSWD_CHECKPOINTS)
async def test_passwd_killed_at(data_dir: Path, template: Template, checkpoint: str) -> None:
    stdin = f"{OLD}\n{NEW}\n"
    returncode = run_cli(
        data_dir, stdin, "user", "passwd", ALICE, "--password-stdin", crash_at=checkpoint
    )
    assert returncode == -signal.SIGKILL
    expected = "new" if checkpoint.endswith("after-commit") else "old"
    assert await _state(data_dir, OLD, NEW) == expected
    # The recovery slot, not used by the change, holds whichever account key is current.
    assert await _code_works(data_dir, template.recovery_code)


@pytest.mark.parametrize("checkpoint", RECOVER_CHECKPOINTS)
async def test_recover_killed_at(data_dir: Path, template: Template, checkpoint: str) -> None:
    stdin = f"{template.recovery_code}\n{NEW}\n"
    returncode = run_cli(data_dir, stdin, "user", "recover", ALICE, "--stdin", crash_at=checkpoint)
    assert returncode == -signal.SIGKILL
    expected = "new" if checkpoint.endswith("after-commit") else "old"
    assert await _state(data_dir, OLD, NEW) == expected
    # Before the commit the code is still good; after it, it is used up.
    assert await _code_works(data_dir, template.recovery_code) == (expected == "old")


WRONG_CODE = "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"


@pytest.mark.parametrize(
    ("command", "stdin", "crash_at"),
    [
        (("passwd", "--password-stdin"), f"wrong {OLD}\n{NEW}\n", PASSWD_CHECKPOINTS[0]),
        (("recover", "--stdin"), f"{WRONG_CODE}\n{NEW}\n", RECOVER_CHECKPOINTS[0]),
    ],
    ids=["passwd", "recover"],
)
async def test_wrong_credential_changes_nothing(
    data_dir: Path, command: tuple[str, str], stdin: str, crash_at: str
) -> None:
    engine = create_engine(_url(data_dir))
    try:
        before = await snapshot(engine)
    finally:
        await engine.dispose()
    # Refused before the first checkpoint: the process exits normally, with 1.
    verb, flag = command
    assert run_cli(data_dir, stdin, "user", verb, ALICE, flag, crash_at=crash_at) == 1
    engine = create_engine(_url(data_dir))
    try:
        assert await snapshot(engine) == before
    finally:
        await engine.dispose()
    assert await _state(data_dir, OLD, NEW) == "old"


def _kill_loop(data_dir: Path, iterations: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    current = OLD
    # One full run tells how long a change takes on this machine (and changes it).
    started = time.monotonic()
    assert (
        run_cli(
            data_dir, f"{current}\nfull run password\n", "user", "passwd", ALICE, "--password-stdin"
        )
        == 0
    )
    full = time.monotonic() - started
    current = "full run password"
    outcomes = []
    for n in range(iterations):
        new = f"password {n}"
        process = subprocess.Popen(
            _command(data_dir, "user", "passwd", ALICE, "--password-stdin"),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdin is not None
        process.stdin.write(f"{current}\n{new}\n".encode())
        process.stdin.close()
        time.sleep(rng.uniform(0.5, 1.1) * full)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        state = asyncio.run(_state(data_dir, current, new))
        outcomes.append(f"{process.returncode}:{state}")
        current = new if state == "new" else current
    return outcomes


def test_random_kills(data_dir: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    _kill_loop(data_dir, 3, seed)


@pytest.mark.slow
def test_random_kills_soak(data_dir: Path) -> None:
    seed = random.randrange(1 << 30)
    outcomes = _kill_loop(data_dir, 30, seed)
    print(f"seed {seed}: {outcomes}")

"""Quota warnings: one message into the INBOX per threshold crossed, through the real
LMTP server, also when parallel deliveries cross together."""

from __future__ import annotations

import asyncio
import email
import smtplib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from cryptmail.db import UserId
from cryptmail.delivery._quota_warning import crossed_threshold, warning_message
from cryptmail.store import round_size
from cryptmail.users import User

from .conftest import MakeRig

ALICE = "alice@example.org"
KIB = 1024


def test_crossed_threshold_is_the_highest_one_passed() -> None:
    quota = 100 * KIB
    assert crossed_threshold(quota, 0, 10 * KIB, (80, 95)) is None
    step = round_size(30 * KIB)
    assert crossed_threshold(quota, 79 * KIB, 30 * KIB, (80, 95)) == (
        95 if 79 * KIB + step >= 95 * KIB else 80
    )
    assert crossed_threshold(quota, 70 * KIB, 12 * KIB, (80, 95)) == 80
    # Already above: no second warning for the same threshold.
    assert crossed_threshold(quota, 81 * KIB, 2 * KIB, (80, 95)) is None
    assert crossed_threshold(0, 0, 10**9, (80, 95)) is None  # no quota
    assert crossed_threshold(quota, 0, 90 * KIB, ()) is None


def test_warning_message_is_a_plain_auto_generated_message() -> None:
    user = User(UserId(7), ALICE, 1, "{X}", 100 * KIB * KIB, 2)
    raw = warning_message(user, 80, 85 * KIB * KIB, datetime(2026, 12, 6, tzinfo=UTC))
    message = email.message_from_bytes(raw)
    assert message["Subject"] == "Your mailbox is 80% full"
    assert message["From"] == "Mail server <postmaster@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert b"\r\n\r\n" in raw and b"85.0 MiB of the 100.0 MiB" in raw


def _send(port: int, size: int, subject: str) -> None:
    body = b"Subject: " + subject.encode() + b"\r\n\r\n" + b"x" * size + b"\r\n"
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.ehlo("client.test")
        assert client.sendmail("s@example.net", [ALICE], body) == {}


def _subjects(messages: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(m)["Subject"]) for m in messages]


async def test_each_threshold_warns_once_as_mail_arrives(rig_factory: MakeRig) -> None:
    rig = await rig_factory(quota_warnings=(80, 95))
    await rig.add_user(ALICE, quota=400 * KIB)
    for index, size in enumerate((200 * KIB, 100 * KIB, 20 * KIB, 50 * KIB)):
        await asyncio.to_thread(_send, rig.port, size, f"m{index}")
    # 200 KiB: 50%; +100: 75%; +20: 80% crossed; +50: 95% crossed.
    assert _subjects(await rig.messages(ALICE)) == [
        "m0",
        "m1",
        "m2",
        "Your mailbox is 80% full",
        "m3",
        "Your mailbox is 95% full",
    ]


async def test_parallel_deliveries_that_cross_together_warn_once(rig_factory: MakeRig) -> None:
    rig = await rig_factory(quota_warnings=(80,))
    await rig.add_user(ALICE, quota=1000 * KIB)
    await asyncio.to_thread(_send, rig.port, 700 * KIB, "big")
    # The clients get threads of their own: in the loop's default pool they would take
    # the threads the server's blocking calls need.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(6) as clients:
        await asyncio.gather(
            *(
                loop.run_in_executor(clients, _send, rig.port, 30 * KIB, f"small{n}")
                for n in range(6)
            )
        )
    subjects = _subjects(await rig.messages(ALICE))
    assert subjects.count("Your mailbox is 80% full") == 1
    assert len(subjects) == 8


async def test_no_warning_without_a_quota_or_thresholds(rig_factory: MakeRig) -> None:
    rig = await rig_factory(quota_warnings=())
    await rig.add_user(ALICE, quota=100 * KIB)
    await rig.add_user("bob@example.org")
    await asyncio.to_thread(_send, rig.port, 90 * KIB, "near full")
    assert _subjects(await rig.messages(ALICE)) == ["near full"]

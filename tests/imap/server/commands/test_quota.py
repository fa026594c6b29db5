# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""QUOTA (RFC 9208) on a live server: the user's root and STORAGE, read fresh for every
command while other sessions and deliveries change the usage and the admin the limit."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.users import get_user, set_quota

from ...server_rig import PASSWORD, USER, ImapRig, start_rig

BOB = "bob@example.org"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _login(rig: ImapRig, user: str = USER) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(user, PASSWORD)
    return imap


def _set_quota(rig: ImapRig, quota: int, email: str = USER) -> None:
    async def work() -> None:
        async with rig.engine.begin() as conn:
            await set_quota(conn, (await get_user(conn, email)).id, quota)

    rig.run(work())


def _storage(imap: imaplib.IMAP4) -> tuple[int, int]:
    typ, data = imap.getquota('"User quota"')
    assert typ == "OK", data
    words = data[0].decode().split("(")[1].rstrip(")").split()
    assert words[0] == "STORAGE"
    return int(words[1]), int(words[2])


def test_capability_and_no_root_without_a_quota(rig: ImapRig) -> None:
    imap = _login(rig)
    caps = imap.capability()[1][0].split()
    assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b"INBOX"], [None]]  # a QUOTAROOT naming no root, and no QUOTA
    typ, data = imap.getquota('"User quota"')
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    imap.logout()


def test_usage_follows_deliveries_and_other_sessions_and_the_limit_the_admin(
    rig: ImapRig,
) -> None:
    _set_quota(rig, 10 * 1024 * 1024)
    phone, desktop = _login(rig), _login(rig)
    typ, data = phone.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[0] == [b'INBOX "User quota"']
    assert data[1] == [b'"User quota" (STORAGE 0 10240)']
    rig.deliver(b"Subject: one\r\n\r\n" + b"x" * 5000 + b"\r\n")
    used_after_delivery, _ = _storage(desktop)
    assert used_after_delivery > 0
    desktop.select("INBOX")
    desktop.append("INBOX", None, None, b"Subject: two\r\n\r\n" + b"y" * 20_000 + b"\r\n")
    used, limit = _storage(phone)
    assert used > used_after_delivery + 19 and limit == 10240
    # The admin changes the quota in SQL: the next GETQUOTA says so, no re-login.
    _set_quota(rig, 2 * 1024 * 1024)
    assert _storage(phone)[1] == 2048
    # Another user's usage is theirs.
    rig.add_user(BOB, PASSWORD)
    _set_quota(rig, 1024 * 1024, BOB)
    bob = _login(rig, BOB)
    assert _storage(bob) == (0, 1024)
    for imap in (phone, desktop, bob):
        imap.logout()


def test_status_deleted_storage_counts_what_an_expunge_frees(rig: ImapRig) -> None:
    _set_quota(rig, 10 * 1024 * 1024)
    for n in range(3):
        rig.deliver(b"Subject: m%d\r\n\r\n" % n + b"z" * 3000 + b"\r\n")
    imap = _login(rig)
    imap.select("INBOX")
    imap.store("1:2", "+FLAGS", "(\\Deleted)")
    other = _login(rig)
    typ, data = other.status("INBOX", "(DELETED DELETED-STORAGE)")
    assert typ == "OK"
    deleted = data[0].decode()
    assert "DELETED 2" in deleted
    freed = int(deleted.split("DELETED-STORAGE ")[1].rstrip(")"))
    before, _ = _storage(other)
    imap.expunge()
    after, _ = _storage(other)
    assert freed > 0 and before - after == freed
    imap.logout()
    other.logout()


def test_getquotaroot_of_a_missing_mailbox_and_setquota_are_refused(rig: ImapRig) -> None:
    _set_quota(rig, 1024 * 1024)
    imap = _login(rig)
    typ, data = imap.getquotaroot("Nowhere")
    assert typ == "NO" and b"[NONEXISTENT]" in repr(data).encode()
    typ, data = imap.setquota('"User quota"', "(STORAGE 99999)")
    assert typ == "NO" and b"[NOPERM]" in data[0]
    assert _storage(imap)[1] == 1024
    with pytest.raises(imaplib.IMAP4.error, match="BAD|SETQUOTA"):
        imap._simple_command("SETQUOTA", '"User quota"', "(STORAGE)")  # no limit: BAD
    assert imap.noop()[0] == "OK"
    imap.logout()


def test_message_resource_with_two_sessions_append_copy_and_expunge(tmp_path: Path) -> None:
    """quota.messages: MESSAGE is reported beside STORAGE, and APPEND and COPY past it
    are refused with NO [OVERQUOTA] whichever session made the count."""
    for rig in start_rig(tmp_path, **{"quota.messages": 3}):
        phone, desktop = _login(rig), _login(rig)
        caps = phone.capability()[1][0].split()
        assert b"QUOTA=RES-MESSAGE" in caps
        # No STORAGE limit: the root holds MESSAGE alone.
        typ, data = phone.getquotaroot("INBOX")
        assert typ == "OK" and data[1] == [b'"User quota" (MESSAGE 0 3)']
        rig.deliver(b"Subject: one\r\n\r\nbody\r\n")
        desktop.append("INBOX", None, None, b"Subject: two\r\n\r\nbody\r\n")
        _set_quota(rig, 10 * 1024 * 1024)
        typ, data = phone.getquota('"User quota"')
        words = data[0].decode()
        assert "MESSAGE 2 3" in words and "STORAGE " in words
        phone.select("INBOX")
        assert phone.copy("1", "Archive")[0] == "OK"  # the third
        typ, data = desktop.append("INBOX", None, None, b"Subject: four\r\n\r\nx\r\n")
        assert typ == "NO" and b"[OVERQUOTA]" in data[0]
        typ, data = phone.copy("1:2", "Archive")
        assert typ == "NO" and b"[OVERQUOTA]" in data[0]
        # An expunge frees a place, seen by the other session at once.
        phone.store("1", "+FLAGS", "(\\Deleted)")
        phone.expunge()
        assert desktop.append("INBOX", None, None, b"Subject: five\r\n\r\nx\r\n")[0] == "OK"
        typ, data = phone.getquota('"User quota"')
        assert "MESSAGE 3 3" in data[0].decode()
        for imap in (phone, desktop):
            imap.logout()


def test_no_message_resource_without_the_setting(rig: ImapRig) -> None:
    imap = _login(rig)
    assert b"QUOTA=RES-MESSAGE" not in imap.capability()[1][0].split()
    _set_quota(rig, 1024 * 1024)
    typ, data = imap.getquota('"User quota"')
    assert typ == "OK" and b"MESSAGE" not in data[0]
    imap.logout()

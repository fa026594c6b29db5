"""dovecot-uidlist: the vectors' files and the rules Dovecot reads them by."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.crypto.dovecot import maildir_base_name, parse_uidlist, read_mailbox_guid
from cryptmail.errors import DovecotFormatError

from ._vectors import VECTORS


def _uidlists() -> list[Path]:
    return sorted(VECTORS.rglob("dovecot-uidlist"))


@pytest.mark.parametrize("path", _uidlists(), ids=lambda p: str(p.relative_to(VECTORS))[:40])
def test_every_vector_uidlist_parses(path: Path) -> None:
    uidlist = parse_uidlist(path.read_bytes())
    assert uidlist.version == 3
    assert uidlist.mailbox_guid == read_mailbox_guid(path.read_bytes())
    assert uidlist.next_uid > max((record.uid for record in uidlist.records), default=0)
    for record in uidlist.records:
        assert record.size is not None
    # Every mail file has its record (a record may outlive its file: alice's uid 7).
    for mail in (path.parent / "new").iterdir():
        found = uidlist.find(mail.name)
        assert found is not None
        assert found.file_name == mail.name


def test_alice_inbox() -> None:
    uidlist = parse_uidlist((VECTORS / "maildirs/alice/Maildir/dovecot-uidlist").read_bytes())
    assert uidlist.uid_validity == 1795865445
    assert uidlist.mailbox_guid == "b5d4b83465bb0a6bfa39000083ecc375"
    # The header says N1 but the records run to 7; Dovecot then uses 8.
    assert uidlist.next_uid == 8
    assert [record.uid for record in uidlist.records] == [1, 2, 3, 4, 5, 6, 7]
    second = uidlist.by_uid(2)
    assert second is not None
    assert second.file_name == "1795865478.M369764P15125.vm,S=334,W=345"
    assert second.guid == "1795865478.M369764P15125.vm"
    assert (second.size, second.virtual_size) == (334, 345)
    first = uidlist.by_uid(1)
    assert first is not None and first.extensions == {}
    assert uidlist.find("1795865478.M369764P15125.vm,S=334,W=345:2,S") is second
    assert uidlist.find("nonexistent") is None
    assert uidlist.by_uid(99) is None


def test_extension_fields_and_header_extensions() -> None:
    data = (
        b"3 V12 N5 G0123456789ABCDEF0123456789abcdef Xextra\n"
        b"1 S10 W12 P0001 :one,S=10\n"
        b"3   W7  :three\n"
    )
    uidlist = parse_uidlist(data)
    assert uidlist.mailbox_guid == "0123456789abcdef0123456789abcdef"
    assert uidlist.header_extensions == {"X": "extra"}
    assert uidlist.records[0].extensions == {"S": "10", "W": "12", "P": "0001"}
    assert uidlist.records[1].file_name == "three"
    assert uidlist.records[1].size is None
    assert uidlist.records[1].virtual_size == 7
    assert uidlist.records[0].size == 10
    assert uidlist.next_uid == 5


def test_version_1() -> None:
    uidlist = parse_uidlist(b"1 77 10\n3 1234.M1P2.host:2,S\n9 5678.M1P2.host\n")
    assert (uidlist.version, uidlist.uid_validity, uidlist.next_uid) == (1, 77, 10)
    assert uidlist.mailbox_guid is None
    assert uidlist.records[0].file_name == "1234.M1P2.host:2,S"
    assert uidlist.find("1234.M1P2.host") is uidlist.records[0]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"x V1 N1\n", "version number"),
        (b"2 V1 N1\n", "version 2"),
        (b"3 V0 N1\n", "between 1"),
        (b"3 V1\n", "between 1"),
        (b"3 Vx N1\n", "not a number"),
        (b"3 V1 N1 Gxyz\n", "GUID"),
        (b"1 5\n", "version 1 header"),
        (b"3 V1 N1\n2 :b\n2 :c\n", "increasing"),
        (b"3 V1 N1\n2 :b\n1 :c\n", "increasing"),
        (b"3 V1 N1\n0 :b\n", "out of range"),
        (b"3 V1 N1\nx :b\n", "does not start"),
        (b"3 V1 N1\n1 :\n", "no file name"),
        (b"3 V1 N1\n1 s5 :a\n", "capital"),
        (b"3 V1 N1\n1 :../etc/passwd\n", "'/'"),
        (b"1 1 3\n3 name\n", "not below"),
    ],
)
def test_broken_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(DovecotFormatError, match=reason):
        parse_uidlist(data)


def test_missing_guid_is_explained() -> None:
    with pytest.raises(DovecotFormatError, match="doveadm mailbox status"):
        read_mailbox_guid(b"3 V1 N1\n")


def test_maildir_base_name() -> None:
    assert maildir_base_name("1.M2P3.host,S=4,W=5:2,RS") == "1.M2P3.host,S=4,W=5"
    assert maildir_base_name("plain") == "plain"


def test_non_utf8_names_survive() -> None:
    uidlist = parse_uidlist(b"3 V1 N2\n1 :caf\xe9\n")
    assert uidlist.records[0].file_name.encode("utf-8", "surrogateescape") == b"caf\xe9"


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.,=", min_size=1, max_size=30)


@given(st.lists(st.tuples(st.integers(1, 2**31), _NAMES), unique_by=lambda pair: pair[0]))
def test_written_uidlists_parse_back(records: list[tuple[int, str]]) -> None:
    records.sort()
    lines = [f"3 V42 N1 G{'ab' * 16}"] + [f"{uid} S1 :{name}" for uid, name in records]
    uidlist = parse_uidlist("\n".join(lines).encode() + b"\n")
    assert [(record.uid, record.file_name) for record in uidlist.records] == records

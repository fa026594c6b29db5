"""Issue "Many clients at once", observation 10: LIST-EXTENDED (RFC 5258 sections 3 to
5, RFC 5819 STATUS, RFC 6154 SPECIAL-USE) option by option, on a live server.

The tree: Fruit (subscribed) with Fruit/Apple (subscribed) and Fruit/Banana;
Veg (not subscribed) with Veg/Leek (subscribed); Tofu (not subscribed, no children);
Gone/Deep, subscribed but not existing, nor its parent. The default folders are
unsubscribed first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..raw_client import RawClient
from ..server_rig import ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


@pytest.fixture
def imap(rig: ImapRig) -> Iterator[RawClient]:
    client = RawClient.connect(rig.port)
    client.login()
    untagged, _ = client.ask(b'LSUB "" *')
    for line in untagged:  # the default folders start subscribed: keep the tree small
        assert b" OK " in client.ask(b"UNSUBSCRIBE " + line.rsplit(b" ", 1)[1])[1]
    for name in (b"Fruit/Apple", b"Fruit/Banana", b"Veg/Leek", b"Tofu"):
        assert b" OK " in client.ask(b"CREATE " + name)[1]
    for name in (b"Fruit", b"Fruit/Apple", b"Veg/Leek", b"Gone/Deep"):
        assert b" OK " in client.ask(b"SUBSCRIBE " + name)[1]
    yield client
    client.close()


def _list(imap: RawClient, command: bytes) -> dict[bytes, bytes]:
    """LIST lines by mailbox name (what follows the delimiter)."""
    untagged, done = imap.ask(command)
    assert b" OK " in done, done
    out = {}
    for line in untagged:
        if not line.startswith(b"* LIST "):
            continue
        attributes, rest = line[len(b"* LIST ") :].split(b' "/" ', 1)
        name, _, extended = rest.partition(b" ")
        out[name] = attributes + (b" " + extended if extended else b"")
    return out


@pytest.mark.parametrize(
    "options", [b"(RECURSIVEMATCH)", b"(REMOTE RECURSIVEMATCH)", b"(RECURSIVEMATCH REMOTE)",
                b"(RECURSIVEMATCH RECURSIVEMATCH)", b"(UNKNOWN)"],
)  # fmt: skip
def test_selection_combinations_that_are_bad(imap: RawClient, options: bytes) -> None:
    _, done = imap.ask(b"LIST " + options + b' "" *')
    assert done.split(b" ", 2)[1] == b"BAD", done
    assert b" OK " in imap.ask(b"NOOP")[1]


def test_unknown_return_option_is_bad(imap: RawClient) -> None:
    _, done = imap.ask(b'LIST "" * RETURN (NOSUCH)')
    assert done.split(b" ", 2)[1] == b"BAD"


def test_empty_selection_and_remote_list_like_plain_list(imap: RawClient) -> None:
    plain = _list(imap, b'LIST "" *')
    assert _list(imap, b'LIST () "" *') == plain
    assert _list(imap, b'LIST (REMOTE) "" *') == plain
    assert b"Gone/Deep" not in plain and b"Gone" not in plain
    assert not any(b"CHILDINFO" in v for v in plain.values())


def test_subscribed_selection_lists_subscribed_names_with_accurate_attributes(
    imap: RawClient,
) -> None:
    listed = _list(imap, b'LIST (SUBSCRIBED) "" *')
    assert set(listed) == {b"Fruit", b"Fruit/Apple", b"Veg/Leek", b"Gone/Deep"}
    assert listed[b"Fruit"] == b"(\\HasChildren \\Subscribed)"
    assert listed[b"Fruit/Apple"] == b"(\\HasNoChildren \\Subscribed)"
    assert listed[b"Gone/Deep"] == b"(\\NonExistent \\Subscribed)"
    # REMOTE adds nothing here; the selection options' order does not matter.
    assert _list(imap, b'LIST (REMOTE SUBSCRIBED) "" *') == listed
    assert not any(b"CHILDINFO" in v for v in listed.values())  # only with RECURSIVEMATCH


def test_recursivematch_childinfo_only_for_children_not_returned(imap: RawClient) -> None:
    listed = _list(imap, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    childinfo = b' ("CHILDINFO" ("SUBSCRIBED"))'
    # Matching parent with a matching child the pattern hides (RFC 5258 section 5, ex. 9).
    assert listed[b"Fruit"] == b"(\\HasChildren \\Subscribed)" + childinfo
    # A parent that does not match but has a child that does.
    assert listed[b"Veg"] == b"(\\HasChildren)" + childinfo
    assert listed[b"Gone"] == b"(\\NonExistent)" + childinfo
    assert b"Tofu" not in listed and b"INBOX" not in listed
    # With "*" every matching child is returned itself: no CHILDINFO, and a parent
    # that does not match is not listed at all (RFC 5258 section 3.5).
    listed = _list(imap, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" *')
    assert set(listed) == {b"Fruit", b"Fruit/Apple", b"Veg/Leek", b"Gone/Deep"}
    assert not any(b"CHILDINFO" in v for v in listed.values())
    # The child need not match the pattern; the parent must.
    listed = _list(imap, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" V%')
    assert listed == {b"Veg": b"(\\HasChildren)" + childinfo}


def test_return_options_add_information_not_names(imap: RawClient) -> None:
    listed = _list(imap, b'LIST "" % RETURN (SUBSCRIBED CHILDREN)')
    assert listed[b"Fruit"] == b"(\\HasChildren \\Subscribed)"
    assert listed[b"Veg"] == b"(\\HasChildren)"
    assert listed[b"Tofu"] == b"(\\HasNoChildren)"
    assert b"Gone" not in listed  # subscribed-only names are not added by RETURN
    assert not any(b"CHILDINFO" in v for v in listed.values())


def test_return_status_only_for_selectable_names(imap: RawClient) -> None:
    untagged, done = imap.ask(
        b'LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES UIDNEXT))'
    )
    assert b" OK " in done
    statuses = sorted(line for line in untagged if line.startswith(b"* STATUS "))
    assert statuses == [b"* STATUS Fruit (MESSAGES 0 UIDNEXT 1)",
                        b"* STATUS Veg (MESSAGES 0 UIDNEXT 1)"]  # fmt: skip
    untagged, _ = imap.ask(b'LIST (SUBSCRIBED) "" * RETURN (STATUS (MESSAGES))')
    assert not any(line.startswith(b"* STATUS Gone") for line in untagged)


def test_special_use_selection_and_return(imap: RawClient) -> None:
    listed = _list(imap, b'LIST (SPECIAL-USE) "" *')
    assert set(listed) == {b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"}
    assert all(v.count(b"\\") >= 2 for v in listed.values())
    listed = _list(imap, b'LIST "" % RETURN (SPECIAL-USE)')
    assert b"\\Drafts" in listed[b"Drafts"] and b"Tofu" in listed

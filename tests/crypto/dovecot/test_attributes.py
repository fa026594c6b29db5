"""The dovecot-attributes dict file, the key model over it, and keyrings built from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.crypto.dovecot import (
    DovecotAttributes,
    DovecotKeyring,
    DovecotKeySet,
    attributes_from_entries,
    attributes_to_entries,
    dump_attributes,
    dump_dict_file,
    dump_private_key_string,
    dump_public_key_string,
    generate_dovecot_key,
    inspect_key_string,
    key_id,
    keyring_from_attributes,
    load_public_key_string,
    old_key_id,
    parse_attributes,
    parse_dict_file,
    read_mailbox_guid,
    unlock_user_keys,
)
from cryptmail.errors import DovecotFormatError, DovecotWrongPassword
from cryptmail.secret import Password

from ._vectors import ATTRIBUTE_FILES, VECTORS, attributes_of, password_of, user_keyring

INBOX_GUID = "b5d4b83465bb0a6bfa39000083ecc375"
ARCHIVE_GUID = "49c6c82386bb0a6b1a3b000083ecc375"
USER_PREFIX = "vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/pvt/crypt/"
FOLDER_PREFIX = "vendor/vendor.dovecot/pvt/crypt/"


# -- the dict file ---------------------------------------------------------------------


def test_escaping_is_dovecots() -> None:
    entries = {"a\tb": "c\nd\re\x01f\x00g"}
    dumped = dump_dict_file(entries)
    assert dumped == b"a\x01tb\nc\x01nd\x01re\x011f\x010g\n"
    assert parse_dict_file(dumped) == entries


def test_unknown_escape_keeps_its_byte_and_incomplete_pair_is_ignored() -> None:
    assert parse_dict_file(b"k\x01x\nv\ndangling key\n") == {"kx": "v"}


def test_last_pair_without_newline_counts() -> None:
    assert parse_dict_file(b"k\nv") == {"k": "v"}


def test_non_utf8_is_refused() -> None:
    with pytest.raises(DovecotFormatError, match="line 1"):
        parse_dict_file(b"\xff\nv\n")


@given(st.dictionaries(st.text(), st.text()))
def test_dict_file_round_trip(entries: dict[str, str]) -> None:
    assert parse_dict_file(dump_dict_file(entries)) == entries


@pytest.mark.parametrize("user", sorted(ATTRIBUTE_FILES))
def test_model_round_trips_every_vector_file(user: str) -> None:
    raw = (VECTORS / ATTRIBUTE_FILES[user]).read_bytes()
    attributes = parse_attributes(raw)
    assert attributes.other == {}
    assert parse_dict_file(dump_attributes(attributes)) == parse_dict_file(raw)
    assert attributes_to_entries(attributes_from_entries(parse_dict_file(raw))) == (
        parse_dict_file(raw)
    )


# -- the model ---------------------------------------------------------------------------


def test_alice_model() -> None:
    alice = attributes_of("alice")
    uidlist = (VECTORS / "maildirs/alice/Maildir/dovecot-uidlist").read_bytes()
    assert alice.user_guid == read_mailbox_guid(uidlist) == INBOX_GUID
    assert alice.user_keys.active == (
        "ef63bb1deae5df467594aab5eef4fb1d34d3772fc5279fbb5ad871e02179ac28"
    )
    assert set(alice.user_keys.private_keys) == set(alice.user_keys.public_keys)
    assert set(alice.folder_keys) == {INBOX_GUID, ARCHIVE_GUID}
    archive_uidlist = (VECTORS / "maildirs/alice/Maildir/.Archive/dovecot-uidlist").read_bytes()
    assert read_mailbox_guid(archive_uidlist) == ARCHIVE_GUID
    assert alice.folder_keys[ARCHIVE_GUID].active == (
        "3528ffa261038856eda7765a8bb6ffa8e2120a518e43e8ceaaaef2f8204f7a03"
    )
    for keys in alice.folder_keys.values():
        for text in keys.private_keys.values():
            assert inspect_key_string(text).encryption_key_id == alice.user_keys.active


def test_building_attributes_like_python_written_mona() -> None:
    user_key = generate_dovecot_key("secp521r1")
    folder_key = generate_dovecot_key("secp521r1")
    password = Password.from_str("Mona-Secret")
    attributes = (
        DovecotAttributes()
        .with_user_key(
            INBOX_GUID,
            dump_private_key_string(user_key, password=password),
            dump_public_key_string(user_key),
        )
        .with_folder_key(
            INBOX_GUID,
            dump_private_key_string(folder_key, encryption_key=user_key.public_key()),
            dump_public_key_string(folder_key),
        )
    )
    entries = parse_dict_file(dump_attributes(attributes))
    assert len(entries) == 6
    assert entries[f"shared/{INBOX_GUID}/{USER_PREFIX}active"] == key_id(user_key)
    assert entries[f"shared/{INBOX_GUID}/{FOLDER_PREFIX}active"] == key_id(folder_key)
    assert f"priv/{INBOX_GUID}/{USER_PREFIX}privkeys/{key_id(user_key)}" in entries
    assert f"shared/{INBOX_GUID}/{FOLDER_PREFIX}pubkeys/{key_id(folder_key)}" in entries
    # Same shape as the file Python wrote for mona and Dovecot accepted.
    mona = parse_dict_file((VECTORS / ATTRIBUTE_FILES["mona"]).read_bytes())
    shape = {name.split("/", 2)[0] + "/" + name.split("/", 2)[2].rsplit("/", 1)[0] for name in mona}
    ours = {
        name.split("/", 2)[0] + "/" + name.split("/", 2)[2].rsplit("/", 1)[0] for name in entries
    }
    assert ours == shape

    keyring = keyring_from_attributes(parse_attributes(dump_attributes(attributes)), password)
    assert keyring.key_ids() == (key_id(folder_key),)


def test_new_key_becomes_active_unless_told_otherwise() -> None:
    first, second = generate_dovecot_key("prime256v1"), generate_dovecot_key("prime256v1")
    keys = DovecotKeySet().with_key(dump_private_key_string(first), dump_public_key_string(first))
    kept = keys.with_key(
        dump_private_key_string(second), dump_public_key_string(second), active=False
    )
    moved = keys.with_key(dump_private_key_string(second), dump_public_key_string(second))
    assert kept.active == key_id(first)
    assert moved.active == key_id(second)
    assert set(moved.private_keys) == {key_id(first), key_id(second)}


def test_mismatched_pair_is_refused() -> None:
    first, second = generate_dovecot_key("prime256v1"), generate_dovecot_key("prime256v1")
    with pytest.raises(DovecotFormatError, match="different keys"):
        DovecotKeySet().with_key(dump_private_key_string(first), dump_public_key_string(second))
    with pytest.raises(DovecotFormatError):
        DovecotKeySet().with_key(dump_public_key_string(first), dump_public_key_string(first))


def test_bad_guid_is_refused() -> None:
    key = generate_dovecot_key("prime256v1")
    with pytest.raises(DovecotFormatError, match="GUID"):
        DovecotAttributes().with_folder_key(
            INBOX_GUID.upper(), dump_private_key_string(key), dump_public_key_string(key)
        )


def test_user_keys_on_two_mailboxes_are_refused() -> None:
    key = generate_dovecot_key("prime256v1")
    attributes = DovecotAttributes().with_user_key(
        INBOX_GUID, dump_private_key_string(key), dump_public_key_string(key)
    )
    with pytest.raises(DovecotFormatError, match="INBOX"):
        attributes.with_user_key(
            ARCHIVE_GUID, dump_private_key_string(key), dump_public_key_string(key)
        )
    entries = attributes_to_entries(attributes)
    entries[f"shared/{ARCHIVE_GUID}/{USER_PREFIX}active"] = key_id(key)
    with pytest.raises(DovecotFormatError, match="two mailboxes"):
        attributes_from_entries(entries)


def test_entry_naming_another_key_is_refused() -> None:
    key, other = generate_dovecot_key("prime256v1"), generate_dovecot_key("prime256v1")
    entries = {
        f"shared/{INBOX_GUID}/{FOLDER_PREFIX}pubkeys/{key_id(other)}": dump_public_key_string(key)
    }
    with pytest.raises(DovecotFormatError, match="another key"):
        attributes_from_entries(entries)
    with pytest.raises(DovecotFormatError, match="64-hex"):
        attributes_from_entries({f"shared/{INBOX_GUID}/{FOLDER_PREFIX}active": "nope"})


def test_entries_that_are_not_ours_are_kept() -> None:
    key = generate_dovecot_key("prime256v1")
    acl_shared = f"shared/{INBOX_GUID}/{FOLDER_PREFIX}privkeys/{key_id(key)}"
    entries = {
        acl_shared: dump_private_key_string(key),
        f"priv/{INBOX_GUID}/vendor/vendor.dovecot/comment": "hello",
    }
    attributes = attributes_from_entries(entries)
    assert attributes.other == entries
    assert attributes.folder_keys == {}
    assert attributes_to_entries(attributes) == entries


# -- keyrings ----------------------------------------------------------------------------


@pytest.mark.parametrize("user", sorted(ATTRIBUTE_FILES))
def test_keyring_holds_every_folder_key(user: str) -> None:
    attributes = attributes_of(user)
    keyring = user_keyring(user)
    folder_ids = {kid for keys in attributes.folder_keys.values() for kid in keys.private_keys}
    assert set(keyring.key_ids()) == folder_ids
    assert not set(attributes.user_keys.private_keys) & set(keyring.key_ids())
    for kid in folder_ids:
        key = keyring.find(kid)
        assert key is not None
        assert key_id(key) == kid
        assert keyring.find(old_key_id(key)) is key


def test_keyring_needs_the_password() -> None:
    with pytest.raises(DovecotWrongPassword, match="give the user's password"):
        keyring_from_attributes(attributes_of("alice"), None)
    with pytest.raises(DovecotWrongPassword):
        keyring_from_attributes(attributes_of("alice"), Password.from_str("Bob-Secret-256"))


def test_keyring_of_grace_needs_no_password() -> None:
    assert len(keyring_from_attributes(attributes_of("grace"), None)) == 1


def test_folder_key_of_a_missing_user_key_is_skipped() -> None:
    alice = attributes_of("alice")
    without_user_keys = DovecotAttributes(folder_keys=alice.folder_keys)
    assert len(keyring_from_attributes(without_user_keys, None)) == 0


def test_unlock_user_keys_gives_every_user_key() -> None:
    bob = attributes_of("bob")
    unlocked = unlock_user_keys(bob, password_of("bob"))
    assert set(unlocked) == set(bob.user_keys.private_keys)
    for kid, key in unlocked.items():
        assert key_id(load_public_key_string(bob.user_keys.public_keys[kid])) == key_id(key)


def test_keyring_repr_shows_no_key() -> None:
    key = generate_dovecot_key("prime256v1")
    keyring = DovecotKeyring([key])
    assert repr(keyring) == "DovecotKeyring(1 keys)"
    assert key_id(key) in keyring
    assert list(keyring) == [key_id(key)]
    assert keyring.add(key) == key_id(key)
    assert len(keyring) == 1

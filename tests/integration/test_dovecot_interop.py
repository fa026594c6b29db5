"""Our Dovecot mail-crypt codec against the real Dovecot 2.3, both ways.

* Keys and mail we write (a password-locked `2:` user key, a folder key, v2 files) are
  read by `doveadm fetch`, byte for byte.
* Mail and keys Dovecot writes (keys it generates itself, mail it saves into our folder
  key, global-key mail with EC and RSA) are read by our reader.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cryptmail.crypto.dovecot import (
    DovecotAttributes,
    DovecotKeyring,
    DovecotPrivateKey,
    decrypt_dovecot_bytes,
    dump_attributes,
    dump_private_key_string,
    dump_public_key_string,
    generate_dovecot_key,
    key_id,
    keyring_from_attributes,
    load_global_private_key,
    parse_attributes,
    parse_dovecot_header,
    read_mailbox_guid,
    write_dovecot_file,
)
from cryptmail.errors import DecryptionFailed
from cryptmail.secret import Password

from .servers.dovecot import Dovecot, DovecotFactory, DovecotUser, dovecot_instances

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"
PASSWORD = "Interop-Secret-1"
# LF line ends: Maildir stores LF, so these come back from Dovecot unchanged.
MESSAGES = {
    name: (VECTORS / "plain" / name).read_bytes()
    for name in ("02-ascii.eml", "03-utf8.eml", "04-large.eml", "06-one-byte.eml")
}


@pytest.fixture
def dovecot_factory() -> Iterator[DovecotFactory]:
    with dovecot_instances() as factory:
        yield factory


def _folder_key_user(name: str, curve: str = "secp521r1") -> DovecotUser:
    return DovecotUser(
        name,
        f"login-{name}",
        {
            "mail_crypt_save_version": "2",
            "mail_crypt_curve": curve,
            "mail_crypt_require_encrypted_user_key": "yes",
            "mail_crypt_private_password": PASSWORD,
        },
    )


def _maildir_name(counter: int, plaintext: bytes) -> str:
    virtual = len(plaintext) + plaintext.count(b"\n") - plaintext.count(b"\r\n")
    return f"{int(time.time())}.M{counter}P{os.getpid()}.cryptmail,S={len(plaintext)},W={virtual}"


def _mail_files(server: Dovecot, user: str, mailbox: str = "INBOX") -> list[Path]:
    folder = server.maildir(user, mailbox)
    return sorted(path for sub in ("new", "cur") for path in (folder / sub).iterdir())


def _keyring(server: Dovecot, user: str) -> DovecotKeyring:
    attributes = parse_attributes((server.home(user) / "Maildir/dovecot-attributes").read_bytes())
    return keyring_from_attributes(attributes, Password.from_str(PASSWORD))


def test_dovecot_reads_keys_and_mail_written_by_us(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(users=[_folder_key_user("mona")], mail_plugins=["mail_crypt"])
    guid = server.mailbox_guid("mona")
    uidlist = (server.maildir("mona") / "dovecot-uidlist").read_bytes()
    assert read_mailbox_guid(uidlist) == guid

    user_key = generate_dovecot_key("secp521r1")
    folder_key = generate_dovecot_key("secp384r1")
    attributes = (
        DovecotAttributes()
        .with_user_key(
            guid,
            dump_private_key_string(user_key, password=Password.from_str(PASSWORD)),
            dump_public_key_string(user_key),
        )
        .with_folder_key(
            guid,
            dump_private_key_string(folder_key, encryption_key=user_key.public_key()),
            dump_public_key_string(folder_key),
        )
    )
    server.install("mona", "Maildir/dovecot-attributes", dump_attributes(attributes))

    for uid, plaintext in enumerate(MESSAGES.values(), start=1):
        encrypted = write_dovecot_file(plaintext, folder_key.public_key())
        server.install("mona", f"Maildir/new/{_maildir_name(uid, plaintext)}", encrypted)
        assert server.fetch_text("mona", uid) == plaintext

    # Dovecot saves new mail into our folder key, and we read it back.
    message = b"From: a@example.org\nSubject: saved by Dovecot\n\nkept in our folder key\n"
    before = set(_mail_files(server, "mona"))
    server.save("mona", message)
    [saved] = set(_mail_files(server, "mona")) - before
    data = saved.read_bytes()
    assert parse_dovecot_header(data).recipients[0].key_id == key_id(folder_key)
    assert decrypt_dovecot_bytes(data, _keyring(server, "mona")) == message
    # Dovecot left our key entries as they were.
    assert (
        parse_attributes((server.home("mona") / "Maildir/dovecot-attributes").read_bytes())
        == attributes
    )


def test_we_read_keys_and_mail_generated_by_dovecot(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(
        users=[_folder_key_user("nina", curve="prime256v1")], mail_plugins=["mail_crypt"]
    )
    for plaintext in MESSAGES.values():
        server.save("nina", plaintext)
    server.doveadm("mailbox", "create", "-u", "nina", "Archive")
    server.save("nina", MESSAGES["02-ascii.eml"], mailbox="Archive")

    keyring = _keyring(server, "nina")
    assert len(keyring) == 2  # one folder key per mailbox
    inbox = {
        decrypt_dovecot_bytes(path.read_bytes(), keyring) for path in _mail_files(server, "nina")
    }
    assert inbox == set(MESSAGES.values())
    [archived] = _mail_files(server, "nina", "Archive")
    assert decrypt_dovecot_bytes(archived.read_bytes(), keyring) == MESSAGES["02-ascii.eml"]

    attributes = parse_attributes((server.home("nina") / "Maildir/dovecot-attributes").read_bytes())
    guid = read_mailbox_guid((server.maildir("nina") / "dovecot-uidlist").read_bytes())
    assert attributes.user_guid == guid
    assert set(attributes.folder_keys) == {
        guid,
        read_mailbox_guid((server.maildir("nina", "Archive") / "dovecot-uidlist").read_bytes()),
    }

    with pytest.raises(Exception, match="password"):
        keyring_from_attributes(attributes, Password.from_str("not the password"))


def test_global_keys_both_ways(dovecot_factory: DovecotFactory) -> None:
    ec_key = generate_dovecot_key("prime256v1")
    rsa_key = load_global_private_key((VECTORS / "keys/frank-global-rsa2048-priv.pem").read_bytes())
    pem_password = "pem-secret"
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(pem_password.encode()),
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def public_pem(key: DovecotPrivateKey) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    users = [
        DovecotUser(
            "gina",
            "login-gina",
            {
                "mail_crypt_save_version": "2",
                "mail_crypt_global_private_key": b64(
                    ec_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                ),
                "mail_crypt_global_public_key": b64(public_pem(ec_key)),
            },
        ),
        DovecotUser(
            "ralf",
            "login-ralf",
            {
                "mail_crypt_save_version": "2",
                "mail_crypt_global_private_key": b64(rsa_pem),
                "mail_crypt_global_private_key_password": pem_password,
                "mail_crypt_global_public_key": b64(public_pem(rsa_key)),
            },
        ),
    ]
    server = dovecot_factory(users=users, mail_plugins=["mail_crypt"])
    message = MESSAGES["03-utf8.eml"]
    for user, key in (("gina", ec_key), ("ralf", rsa_key)):
        server.mailbox_guid(user)
        ours = write_dovecot_file(message, key.public_key())
        server.install(user, f"Maildir/new/{_maildir_name(1, message)}", ours)
        assert server.fetch_text(user, 1) == message

        server.save(user, MESSAGES["02-ascii.eml"])
        [saved] = [path for path in _mail_files(server, user) if ".cryptmail," not in path.name]
        data = saved.read_bytes()
        assert parse_dovecot_header(data).recipients[0].key_id == key_id(key)
        assert decrypt_dovecot_bytes(data, DovecotKeyring([key])) == MESSAGES["02-ascii.eml"]


def test_tampered_mail_is_refused_by_us_while_dovecot_complains_late(
    dovecot_factory: DovecotFactory,
) -> None:
    server = dovecot_factory(
        users=[_folder_key_user("tara", "prime256v1")], mail_plugins=["mail_crypt"]
    )
    server.save("tara", MESSAGES["02-ascii.eml"])
    [path] = _mail_files(server, "tara")
    damaged = bytearray(path.read_bytes())
    damaged[255 + 45] ^= 0x01  # P-256 header, then "Return-Path: ...\nFrom: Sende[r]"
    path.write_bytes(bytes(damaged))

    with pytest.raises(DecryptionFailed):
        decrypt_dovecot_bytes(bytes(damaged), _keyring(server, "tara"))
    result = server.doveadm(
        "fetch", "-u", "tara", "text", "mailbox", "INBOX", "uid", "1", check=False
    )
    # Dovecot (spec §3.5) prints the altered body, then reports the failed tag.
    assert result.returncode != 0
    assert b"MAC error: data authentication failed" in result.stderr
    assert b"From: Sendes <sender@example.org>" in result.stdout


def test_cli_decrypts_what_dovecot_wrote(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(
        users=[_folder_key_user("cleo", "secp384r1")], mail_plugins=["mail_crypt"]
    )
    server.save("cleo", MESSAGES["03-utf8.eml"])
    [path] = _mail_files(server, "cleo")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptmail",
            "dovecot",
            "decrypt",
            str(path),
            "--attributes",
            str(server.home("cleo") / "Maildir/dovecot-attributes"),
            "--password-stdin",
        ],
        input=PASSWORD.encode() + b"\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == MESSAGES["03-utf8.eml"]


def test_runner_listeners_answer(dovecot_factory: DovecotFactory) -> None:
    """The runner's optional IMAP and LMTP listeners work (for the differential tests)."""
    import imaplib
    import smtplib

    server = dovecot_factory(users=[DovecotUser("ivy", "ivy-pw")], imap=True, lmtp=True)
    assert server.imap_port is not None and server.lmtp_port is not None
    with smtplib.LMTP(server.host, server.lmtp_port) as lmtp:
        lmtp.sendmail("sender@example.org", ["ivy"], b"Subject: over LMTP\r\n\r\nhello\r\n")
    client = imaplib.IMAP4(server.host, server.imap_port)
    try:
        client.login("ivy", "ivy-pw")
        client.select("INBOX")
        status, data = client.fetch("1", "(BODY[])")
        assert status == "OK"
        first = data[0]
        assert isinstance(first, tuple)
        assert first[1].endswith(b"hello\r\n")
    finally:
        client.logout()

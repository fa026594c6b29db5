"""`cryptmail dovecot` as a user runs it: a subprocess, passwords on stdin, mail on stdout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"
ALICE = VECTORS / "maildirs/alice/Maildir"
ALICE_02 = ALICE / "new/1795865478.M369764P15125.vm,S=334,W=345"
ALICE_ARCHIVE = ALICE / ".Archive/new/1795865478.M626751P15131.vm,S=334,W=345"
BOB_02 = VECTORS / "maildirs/bob/Maildir/new/1795865601.M673877P16102.vm,S=334,W=345"
DAVE_03 = VECTORS / "maildirs/dave/Maildir/new/1795865611.M431811P16211.vm,S=442,W=453"
FRANK_03 = VECTORS / "maildirs/frank/Maildir/new/1795865639.M345642P16491.vm,S=442,W=453"
ERIN_02 = VECTORS / "maildirs/erin/Maildir/new/1795865622.M575291P16303.vm,S=334,W=345"
GRACE = VECTORS / "maildirs/grace/Maildir"
PLAIN_02 = (VECTORS / "plain/02-ascii.eml").read_bytes()
PLAIN_03 = (VECTORS / "plain/03-utf8.eml").read_bytes()


def _run(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cryptmail", "dovecot", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _failed(result: subprocess.CompletedProcess[bytes], *words: str) -> None:
    """Exit 1, nothing on stdout, one line on stderr that contains `words`."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.count("\n") == 1 and message.startswith("cryptmail: "), message
    assert "Traceback" not in message
    for word in words:
        assert word in message, message


def test_decrypt_with_attributes_and_password() -> None:
    for mail in (ALICE_02, ALICE_ARCHIVE):
        result = _run(
            "decrypt",
            mail,
            "--attributes",
            ALICE / "dovecot-attributes",
            "--password-stdin",
            stdin=b"Alice-Secret-521\n",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == PLAIN_02
        assert result.stderr == b""


def test_decrypt_with_a_clear_user_key_needs_no_password() -> None:
    mail = GRACE / "new/1795865639.M527172P16499.vm,S=334,W=345"
    result = _run("decrypt", mail, "--attributes", GRACE / "dovecot-attributes")
    assert (result.returncode, result.stdout) == (0, PLAIN_02)


def test_decrypt_with_global_keys() -> None:
    dave = _run("decrypt", DAVE_03, "--private-key", VECTORS / "keys/dave-global-ec-p256-priv.pem")
    assert (dave.returncode, dave.stdout) == (0, PLAIN_03)
    frank = _run(
        "decrypt",
        FRANK_03,
        "--private-key",
        VECTORS / "keys/frank-global-rsa2048-priv-encrypted.pem",
        "--password-stdin",
        stdin=b"frank-global-pw\n",
    )
    assert (frank.returncode, frank.stdout) == (0, PLAIN_03)


def test_wrong_password_writes_nothing() -> None:
    result = _run(
        "decrypt",
        ALICE_02,
        "--attributes",
        ALICE / "dovecot-attributes",
        "--password-stdin",
        stdin=b"Alice-Secret-520\n",
    )
    _failed(result, "password does not unlock")
    assert b"Alice-Secret" not in result.stderr


def test_missing_password_is_explained() -> None:
    result = _run("decrypt", ALICE_02, "--attributes", ALICE / "dovecot-attributes")
    _failed(result, "password")


def test_wrong_pem_password_writes_nothing() -> None:
    result = _run(
        "decrypt",
        FRANK_03,
        "--private-key",
        VECTORS / "keys/frank-global-rsa2048-priv-encrypted.pem",
        "--password-stdin",
        stdin=b"not-it\n",
    )
    _failed(result, "password")


@pytest.mark.parametrize("where", ["body", "tag"])
def test_tampered_file_writes_nothing(tmp_path: Path, where: str) -> None:
    damaged = bytearray(ALICE_02.read_bytes())
    damaged[400 if where == "body" else -1] ^= 0x01
    mail = tmp_path / "mail"
    mail.write_bytes(bytes(damaged))
    result = _run(
        "decrypt",
        mail,
        "--attributes",
        ALICE / "dovecot-attributes",
        "--password-stdin",
        stdin=b"Alice-Secret-521\n",
    )
    _failed(result, "failed authentication")


def test_unknown_key_id_writes_nothing() -> None:
    result = _run(
        "decrypt",
        BOB_02,
        "--attributes",
        ALICE / "dovecot-attributes",
        "--password-stdin",
        stdin=b"Alice-Secret-521\n",
    )
    _failed(
        result, "no private key", "54dc28397e808fd1ee2814c131bebd4c88b4d5671544294372015e48fc71f39d"
    )


def test_v1_file_needs_consent() -> None:
    attributes = VECTORS / "maildirs/erin/Maildir/dovecot-attributes"
    args = ("decrypt", ERIN_02, "--attributes", attributes, "--password-stdin")
    _failed(_run(*args, stdin=b"Erin-Secret\n"), "no integrity")
    allowed = _run(*args, "--allow-unauthenticated", stdin=b"Erin-Secret\n")
    assert (allowed.returncode, allowed.stdout) == (0, PLAIN_02)


def test_plain_file_is_copied_unless_encryption_is_required(tmp_path: Path) -> None:
    mail = tmp_path / "plain"
    mail.write_bytes(PLAIN_02)
    key = VECTORS / "keys/dave-global-ec-p256-priv.pem"
    copied = _run("decrypt", mail, "--private-key", key)
    assert (copied.returncode, copied.stdout) == (0, PLAIN_02)
    _failed(_run("decrypt", mail, "--private-key", key, "--require-encrypted"), "not encrypted")


def test_missing_files_are_named(tmp_path: Path) -> None:
    _failed(
        _run(
            "decrypt",
            tmp_path / "nope",
            "--private-key",
            VECTORS / "keys/dave-global-ec-p256-priv.pem",
        ),
        "mail file",
    )
    _failed(_run("decrypt", DAVE_03, "--private-key", tmp_path / "nokey"), "key file")


def test_inspect_needs_no_key() -> None:
    result = _run("inspect", ALICE_02)
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "format: v2" in text
    assert "cipher: aes-256-gcm" in text
    assert "recipient: EC 999c8dc2339899a8b5067cf7cf5f2a6d4be8467ea9de069d9a76a10ca7bd9081" in text


@pytest.mark.parametrize("words", [(), ("decrypt",), ("inspect",)])
def test_help(words: tuple[str, ...]) -> None:
    result = _run(*words, "--help")
    assert result.returncode == 0
    assert b"usage: cryptmail dovecot" in result.stdout


def test_key_source_is_required() -> None:
    result = _run("decrypt", ALICE_02)
    assert result.returncode == 2
    assert b"--attributes" in result.stderr and result.stdout == b""

"""`cryptmail serve` with its blobs in S3 (SeaweedFS): LMTP in, IMAP out, nothing readable
in the bucket, and `store check` over the bucket.

The config file selects the S3 backend, with the keys in files; SQLite holds the rows.
"""

from __future__ import annotations

import imaplib
import os
import secrets
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.delivery import delivery_headers

from .cryptmail_server import PASSWORD, make_users, stop_process, wait_for_greeting
from .servers import S3Credentials, SeaweedFS, free_port

pytestmark = pytest.mark.integration

EMAIL = "sealed@example.org"
PLAIN_EMAIL = "plain@example.org"  # crypt = 0: its blobs are plain, the scan must see them
MARKER = "Zq" + "S3sealedMk7"
PLAIN_MARKER = "Zq" + "S3plainMk7"


def _message(size: int = 0, to: str = EMAIL, marker: str = MARKER) -> bytes:
    filler = b"".join(b"line %06d of the padding\r\n" % n for n in range(size // 26))
    return (
        f"From: Sender <s@example.net>\r\nTo: <{to}>\r\nSubject: {marker} subject\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\n\r\n{marker} body\r\n"
    ).encode() + filler


def _write_config(tmp_path: Path, creds: S3Credentials, bucket: str) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "access").write_text(creds.access_key + "\n")
    (keys / "secret").write_text(creds.secret_key + "\n")
    os.chmod(keys / "secret", 0o600)
    path = tmp_path / "cryptmail.toml"
    path.write_text(
        f"data_dir = '{tmp_path / 'data'}'\n"
        "[crypto.argon2]\nmemory_kib = 19456\n"
        "[blobs]\nbackend = 's3'\n"
        f"s3_endpoint = '{creds.endpoint}'\ns3_bucket = '{bucket}'\n"
        f"s3_access_key_file = '{keys / 'access'}'\n"
        f"s3_secret_key_file = '{keys / 'secret'}'\n"
    )
    return path


def _cryptmail(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cryptmail", "--config", str(config), *args]


@pytest.fixture
def served(tmp_path: Path, seaweedfs: SeaweedFS) -> Iterator[tuple[Path, int, int, str]]:
    """(config file, LMTP port, IMAP port, bucket) of a running `cryptmail serve`."""
    bucket = f"mail-{secrets.token_hex(6)}"
    seaweedfs.credentials.client().create_bucket(Bucket=bucket)
    config = _write_config(tmp_path, seaweedfs.credentials, bucket)
    make_users(tmp_path / "data", "example.org", {EMAIL: 2, PLAIN_EMAIL: 0})
    lmtp, imap = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            _cryptmail(
                config, "-v", "serve", "--lmtp", f"127.0.0.1:{lmtp}", "--imap", f"127.0.0.1:{imap}"
            ),
            stdout=sink,
            stderr=sink,
        )
    try:
        wait_for_greeting(process, lmtp, log)
        wait_for_greeting(process, imap, log)
        yield config, lmtp, imap, bucket
    finally:
        stop_process(process)
    # At DEBUG (-v) too: no S3 key (botocore's DEBUG records show the access key id in
    # every request's headers) and no mail content.
    text = log.read_bytes()
    assert seaweedfs.credentials.secret_key.encode() not in text
    assert seaweedfs.credentials.access_key.encode() not in text
    assert MARKER.encode() not in text and PLAIN_MARKER.encode() not in text


def test_lmtp_to_imap_through_s3_leaves_nothing_readable(
    served: tuple[Path, int, int, str], seaweedfs: SeaweedFS
) -> None:
    config, lmtp, imap_port, bucket = served
    small, large = _message(), _message(12 * 1024 * 1024)  # the large one is multipart
    with smtplib.LMTP("127.0.0.1", lmtp) as client:
        client.sendmail("s@example.net", [EMAIL], small)
        client.sendmail("s@example.net", [EMAIL], large)
        client.sendmail(
            "s@example.net", [PLAIN_EMAIL], _message(to=PLAIN_EMAIL, marker=PLAIN_MARKER)
        )

    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    try:
        assert imap.login(EMAIL, PASSWORD)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
        fetched = []
        for uid in ("1", "2"):
            typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            assert typ == "OK"
            fetched.append(next(item[1] for item in data if isinstance(item, tuple)))
        top = delivery_headers("s@example.net", EMAIL)
        assert fetched == [top + small, top + large]
    finally:
        imap.logout()

    client = seaweedfs.credentials.client()
    keys = [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 3
    bodies = [client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    assert [b for b in bodies if MARKER.lower().encode() in b.lower()] == []
    assert len([b for b in bodies if PLAIN_MARKER.encode() in b]) == 1  # the scan sees plain
    assert not (config.parent / "data" / "blobs").exists()  # nothing went to the local backend

    check = subprocess.run(
        _cryptmail(config, "store", "check"), capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "rows: 3" in check.stdout and "blobs: 3" in check.stdout


def test_wrong_s3_secret_is_a_clear_error(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    bucket = f"mail-{secrets.token_hex(6)}"
    seaweedfs.credentials.client().create_bucket(Bucket=bucket)
    config = _write_config(tmp_path, seaweedfs.credentials, bucket)
    wrong = "wrong-" + secrets.token_hex(8)
    (tmp_path / "keys" / "secret").write_text(wrong + "\n")
    make_users(tmp_path / "data", "example.org", {EMAIL: 2})
    check = subprocess.run(
        _cryptmail(config, "store", "check"), capture_output=True, text=True, timeout=120
    )
    assert check.returncode != 0
    output = check.stdout + check.stderr
    assert "refused the credentials" in output and "s3_secret_key_file" in output
    assert wrong not in output

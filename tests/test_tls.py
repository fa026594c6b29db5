"""The self-signed certificate: named for the configured host, each name once."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from cryptmail.config import load_config
from cryptmail.errors import ConfigError
from cryptmail.tls import make_ssl_context, reload_ssl_context


def _made(tmp_path: Path, hostname: str) -> x509.Certificate:
    config = load_config(None, data_dir=str(tmp_path), hostname=hostname)
    make_ssl_context(config)
    return x509.load_pem_x509_certificate((tmp_path / "imap-selfsigned.pem").read_bytes())


def test_the_configured_hostname_is_the_cn_and_first_name(tmp_path: Path) -> None:
    cert = _made(tmp_path, "mail.example.test")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert cn == "mail.example.test"
    assert names.get_values_for_type(x509.DNSName) == ["mail.example.test", "localhost"]


def test_no_name_appears_twice(tmp_path: Path) -> None:
    cert = _made(tmp_path, "localhost")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert len(names.get_values_for_type(x509.IPAddress)) == 2


def test_the_key_file_is_private(tmp_path: Path) -> None:
    _made(tmp_path, "mail.example.test")
    assert (tmp_path / "imap-selfsigned.key").stat().st_mode & 0o077 == 0


def test_a_reload_that_cannot_load_raises_and_keeps_the_context(tmp_path: Path) -> None:
    config = load_config(None, data_dir=str(tmp_path), hostname="mail.example.test")
    context = make_ssl_context(config)
    (tmp_path / "imap-selfsigned.key").write_text("not a key\n")
    before = _handshake(context)
    with pytest.raises(ConfigError, match="the previous certificate stays in use"):
        reload_ssl_context(context, config)
    assert _handshake(context) == before  # still handshakes, with the old certificate


def _handshake(server_context: ssl.SSLContext) -> bytes:
    """A TLS handshake in memory; the certificate the client was shown."""
    client_context = ssl.create_default_context()
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server)
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der

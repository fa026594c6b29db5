"""The server TLS context that IMAP and POP3 share: the configured certificate
(`imap.tls_cert`), or a self-signed one made once in the data directory.

The self-signed certificate's SHA-256 fingerprint is logged at every start, so users
can compare it with what their client shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path

from cryptmail.config import Config

log = logging.getLogger(__name__)

# Named for IMAP, which made it first; kept so existing data directories keep theirs.
_CERT_NAME = "imap-selfsigned.pem"
_KEY_NAME = "imap-selfsigned.key"


def _make_self_signed(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.getfqdn()[:64])])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName(socket.getfqdn()),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(san, critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _fingerprint(cert_path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def make_ssl_context(config: Config) -> ssl.SSLContext:
    """The server TLS context: the configured certificate, or a self-signed one."""
    if config.imap.tls_cert:
        cert_path, key_path = Path(config.imap.tls_cert), Path(config.imap.tls_key)
    else:
        cert_path = config.data_path / _CERT_NAME
        key_path = config.data_path / _KEY_NAME
        if not (cert_path.exists() and key_path.exists()):
            _make_self_signed(cert_path, key_path)
            log.info("made a self-signed IMAP and POP3 certificate in the data directory")
        log.info(
            "IMAP and POP3 self-signed certificate SHA-256 fingerprint %s", _fingerprint(cert_path)
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context

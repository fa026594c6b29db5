"""Certificates for tests, made with `cryptography`: a name, a validity window, files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_certificate(
    cert_path: Path,
    key_path: Path,
    common_name: str,
    *,
    days_left: float = 90.0,
    key_mode: int = 0o600,
) -> bytes:
    """A self-signed certificate for `common_name` that expires in `days_left` days (past
    if negative), written as PEM; returns its DER bytes."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days_left)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - dt.timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Replaced by rename, as certbot does: a reader sees the old file or the new one.
    for path, data, mode in (
        (key_path, key_pem, key_mode),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        temp = path.with_name(path.name + ".new")
        temp.write_bytes(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    return cert.public_bytes(serialization.Encoding.DER)

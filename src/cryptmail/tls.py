"""The server TLS context that IMAP and POP3 share: the configured certificate
(`imap.tls_cert`), or a self-signed one made once in the data directory.

`serve` makes the context once for both (so the self-signed certificate's SHA-256
fingerprint is logged once per start, for users to compare with what their client
shows), and on SIGHUP loads the certificate files again into the same context
(`reload_ssl_context`): handshakes from then on present the new certificate (a Let's
Encrypt renewal), sessions already established keep theirs.

`upgrade_stream` is the server side of STARTTLS (IMAP), STLS (POP3) and ManageSieve's
STARTTLS: the one place that refuses plaintext pipelined after the command.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptmail.config import Config
from cryptmail.errors import ConfigError

log = logging.getLogger(__name__)


class PlaintextAfterStartTls(Exception):
    """The client sent more after the command that starts TLS: the session must end."""


class TlsHandshakeFailed(Exception):
    """The TLS handshake after the go-ahead failed: the session must end."""


async def upgrade_stream(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    *,
    plaintext_left: Callable[[], int],
    say: Callable[[bytes], Awaitable[None]],
    go_ahead: bytes,
    refusal: bytes,
) -> None:
    """Answer the command that starts TLS on `writer`, then run the handshake.

    Bytes received after that command came in plaintext: letting them into the TLS
    session would run an attacker's commands as if they were protected
    (CVE-2011-0411). Reading stops first, so new bytes stay in the socket until the TLS
    layer reads them and what the session's buffers hold (`plaintext_left`) is all the
    plaintext there will ever be. If there is any, `refusal` is said and
    PlaintextAfterStartTls raised: like Dovecot and Postfix, the caller hangs up.
    Otherwise `go_ahead` is said and the handshake runs (TlsHandshakeFailed).
    `say` sends and drains, with the protocol's own timeout and errors.
    """
    transport = writer.transport
    if isinstance(transport, asyncio.ReadTransport):
        transport.pause_reading()
    if plaintext_left():
        await say(refusal)
        raise PlaintextAfterStartTls("bytes pipelined after the command that starts TLS")
    await say(go_ahead)
    try:
        await writer.start_tls(context)
    except (ssl.SSLError, OSError) as exc:
        raise TlsHandshakeFailed(f"TLS handshake failed: {exc}") from exc


# Named for IMAP, which made it first; kept so existing data directories keep theirs.
_CERT_NAME = "imap-selfsigned.pem"
_KEY_NAME = "imap-selfsigned.key"


def _names(hostname: str) -> list[str]:
    """The certificate's DNS names: `hostname` first (the CN), then localhost, once each."""
    return list(dict.fromkeys([hostname, "localhost"]))


def _make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [
            *(x509.DNSName(dns) for dns in _names(hostname)),
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
    _write_durably(key_path, key_pem)
    _write_durably(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _write_durably(path: Path, data: bytes) -> None:
    """Write, fsync, rename: a crash leaves the old file or the whole new one (mode 600)."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def _fingerprint(cert_path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def certificate_paths(config: Config) -> tuple[Path, Path]:
    """The certificate and key files IMAP and POP3 present (configured or self-signed)."""
    if config.imap.tls_cert:
        return Path(config.imap.tls_cert), Path(config.imap.tls_key)
    return config.data_path / _CERT_NAME, config.data_path / _KEY_NAME


def make_ssl_context(config: Config) -> ssl.SSLContext:
    """The server TLS context: the configured certificate, or a self-signed one."""
    cert_path, key_path = certificate_paths(config)
    if not config.imap.tls_cert:
        if not (cert_path.exists() and key_path.exists()):
            _make_self_signed(cert_path, key_path, config.hostname or socket.getfqdn())
            log.info("made a self-signed IMAP and POP3 certificate in the data directory")
        log.info(
            "IMAP and POP3 self-signed certificate SHA-256 fingerprint %s", _fingerprint(cert_path)
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


def reload_ssl_context(context: ssl.SSLContext, config: Config) -> None:
    """Load the IMAP/POP3 certificate files into `context` again: new handshakes present
    them, established sessions keep the certificate they began with.

    Raises ConfigError (and `context` keeps its old certificate) if the files cannot be
    read or do not match."""
    cert_path, key_path = certificate_paths(config)
    reload_certificate(context, cert_path, key_path)


def reload_certificate(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    """`reload_ssl_context` for any listener's context and files (the web has its own)."""
    try:
        # Tried on a scratch context first: a failed load half-way (a new certificate
        # with the old key) must not leave the live context unable to handshake.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(cert_path), str(key_path)
        )
        context.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"TLS certificate {cert_path} or key {key_path} could not be loaded ({exc}); "
            "the previous certificate stays in use. Fix the files, then send SIGHUP again"
        ) from exc
    log.info("TLS certificate reloaded from %s", cert_path)

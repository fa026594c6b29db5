"""The self-signed certificate: named for the configured host, each name once; and the
server side of STARTTLS (`upgrade_stream`): plaintext after the command refused, the
handshake run, its failure reported."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from cryptmail.config import load_config
from cryptmail.errors import ConfigError
from cryptmail.tls import (
    PlaintextAfterStartTls,
    TlsHandshakeFailed,
    make_ssl_context,
    reload_ssl_context,
    upgrade_stream,
)


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


async def _upgrade_once(
    tmp_path: Path, plaintext_left: int, client_handshakes: bool
) -> tuple[bytes, BaseException | None]:
    """One server connection through `upgrade_stream`: what the client read in plaintext,
    and what the server's upgrade raised (None if it went through)."""
    context = make_ssl_context(load_config(None, data_dir=str(tmp_path), hostname="mail.test"))
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await upgrade_stream(
                writer,
                context,
                plaintext_left=lambda: plaintext_left,
                say=say,
                go_ahead=b"OK go\r\n",
                refusal=b"BYE no\r\n",
            )
        except Exception as exc:  # the outcome the test reads
            outcome.set_result(exc)
        else:
            writer.write(b"sealed hello\r\n")  # now through TLS
            await writer.drain()
            outcome.set_result(None)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    said = await reader.readline()
    if client_handshakes and said == b"OK go\r\n":
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        await writer.start_tls(client)
        assert await reader.readline() == b"sealed hello\r\n"
    writer.close()
    result = await asyncio.wait_for(outcome, 10)
    server.close()
    await server.wait_closed()
    return said, result


async def test_upgrade_stream_refuses_plaintext_after_the_command(tmp_path: Path) -> None:
    said, raised = await _upgrade_once(tmp_path, plaintext_left=5, client_handshakes=True)
    assert said == b"BYE no\r\n"
    assert isinstance(raised, PlaintextAfterStartTls)


async def test_upgrade_stream_goes_ahead_and_hands_over_to_tls(tmp_path: Path) -> None:
    said, raised = await _upgrade_once(tmp_path, plaintext_left=0, client_handshakes=True)
    assert said == b"OK go\r\n"
    assert raised is None


async def test_upgrade_stream_reports_a_failed_handshake(tmp_path: Path) -> None:
    said, raised = await _upgrade_once(tmp_path, plaintext_left=0, client_handshakes=False)
    assert said == b"OK go\r\n"
    assert isinstance(raised, TlsHandshakeFailed)

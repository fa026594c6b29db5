"""The IMAP listener: plain (STARTTLS offered) or implicit TLS, a per-address and a
global connection cap, and a graceful stop when the shutdown event is set.

When no certificate is configured, a self-signed one is made once in the data
directory and its SHA-256 fingerprint is logged, so users can compare it with what
their client shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.imap.server._learning import SpamLearner
from cryptmail.imap.server._session import Session
from cryptmail.keys import CredentialWatcher, LoginThrottle, UnlockedAccounts
from cryptmail.store import ChangeBus
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)

_CERT_NAME = "imap-selfsigned.pem"
_KEY_NAME = "imap-selfsigned.key"
_SHUTDOWN_GRACE_S = 5.0


@dataclass
class ServerContext:
    """What every session of one listener shares."""

    config: Config
    engine: AsyncEngine
    blobs: BlobStore
    bus: ChangeBus
    throttle: LoginThrottle
    accounts: UnlockedAccounts
    ssl_context: ssl.SSLContext | None
    # Ends sessions whose credentials changed; shared per engine like `accounts`.
    watcher: CredentialWatcher
    hostname: str = field(default_factory=socket.gethostname)
    learner: SpamLearner | None = None
    """Spam learning on moves into and out of Junk; None when `spam` is not configured."""


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
            log.info("made a self-signed IMAP certificate in the data directory")
        log.info("IMAP self-signed certificate SHA-256 fingerprint %s", _fingerprint(cert_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


class ImapListener:
    """IMAP on `host:port` (implicit TLS when `implicit_tls`) and its sessions: the
    listener shape `serve` runs (start, wait_closed, stop with a grace period). Port 0
    picks a free port; `port` tells which once started."""

    def __init__(self, context: ServerContext, host: str, port: int, *, implicit_tls: bool) -> None:
        self._context = context
        self._host = host
        self._requested_port = port
        self._implicit_tls = implicit_tls
        self._closed = asyncio.Event()
        # Shared by the plain and the TLS listener of one engine: the caps count
        # connections whichever port they came to.
        self._counts = _shared_counts(context.engine)
        self._sessions: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def context(self) -> ServerContext:
        return self._context

    @property
    def name(self) -> str:
        kind = "IMAPS" if self._implicit_tls else "IMAP"
        return f"{kind} on {self._host}:{self._requested_port}"

    @property
    def port(self) -> int:
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and accept. Raises OSError when the address cannot be bound."""
        ssl_context = self._context.ssl_context if self._implicit_tls else None
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._requested_port,
            ssl=ssl_context,
            reuse_address=True,
            limit=1 << 16,
        )
        log.info(
            "IMAP%s listening on %s:%d", "S" if self._implicit_tls else "", self._host, self.port
        )

    async def wait_closed(self) -> None:
        """Return once `stop` has finished."""
        await self._closed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:

        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        counts, limits = self._counts, self._context.config.imap
        refusal = None
        if counts.total >= limits.max_connections:
            refusal = b"* BYE Too many connections to this server; try again later.\r\n"
            log.warning("IMAP connection refused: imap.max_connections reached")
        elif counts.per_ip.get(ip, 0) >= limits.max_connections_per_ip:
            refusal = b"* BYE Too many connections from your address.\r\n"
        if refusal is not None:
            with contextlib.suppress(OSError):
                writer.write(refusal)
                await writer.drain()
            writer.close()
            return
        counts.per_ip[ip] = counts.per_ip.get(ip, 0) + 1
        counts.total += 1
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._sessions.add(task)
        try:
            session = Session(
                self._context, reader, writer, peer_ip=ip, tls_active=self._implicit_tls
            )
            await session.run()
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("IMAP connection from a client failed")
        finally:
            self._sessions.discard(task)
            counts.total -= 1
            counts.per_ip[ip] -= 1
            if not counts.per_ip[ip]:
                del counts.per_ip[ip]

    async def stop(self, grace_s: float = _SHUTDOWN_GRACE_S) -> None:
        """Close the socket and end every session (each says BYE), waiting at most
        `grace_s` (and _SHUTDOWN_GRACE_S) for them."""
        grace_s = min(grace_s, _SHUTDOWN_GRACE_S)
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=grace_s)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), grace_s)
        learner = self.context.learner
        if learner is not None:  # what is still queued is not learned: training is a hint
            await learner.close()
        self._closed.set()
        log.info("%s stopped", self.name)


_ACCOUNTS: weakref.WeakKeyDictionary[AsyncEngine, UnlockedAccounts] = weakref.WeakKeyDictionary()
_WATCHERS: weakref.WeakKeyDictionary[AsyncEngine, CredentialWatcher] = weakref.WeakKeyDictionary()


@dataclass
class _Connections:
    per_ip: dict[str, int] = field(default_factory=dict)
    total: int = 0


_CONNECTIONS: weakref.WeakKeyDictionary[AsyncEngine, _Connections] = weakref.WeakKeyDictionary()


def _shared_counts(engine: AsyncEngine) -> _Connections:
    return _CONNECTIONS.setdefault(engine, _Connections())


def _shared_accounts(engine: AsyncEngine, config: Config) -> UnlockedAccounts:
    # The plain and the TLS listener share unlocked keys, so Argon2 runs once per user.
    accounts = _ACCOUNTS.get(engine)
    if accounts is None:
        accounts = _ACCOUNTS[engine] = UnlockedAccounts.from_config(engine, config)
    return accounts


def _shared_watcher(engine: AsyncEngine) -> CredentialWatcher:
    # One poll per process for every listener's sessions.
    watcher = _WATCHERS.get(engine)
    if watcher is None:
        watcher = _WATCHERS[engine] = CredentialWatcher(engine)
    return watcher


def make_context(
    config: Config,
    *,
    engine: AsyncEngine,
    blobs: BlobStore,
    bus: ChangeBus,
    throttle: LoginThrottle,
    accounts: UnlockedAccounts | None = None,
    watcher: CredentialWatcher | None = None,
) -> ServerContext:
    return ServerContext(
        config=config,
        engine=engine,
        blobs=blobs,
        bus=bus,
        throttle=throttle,
        accounts=accounts or _shared_accounts(engine, config),
        ssl_context=make_ssl_context(config),
        watcher=watcher or _shared_watcher(engine),
        learner=SpamLearner(config.spam, blobs)
        if config.spam.learn_spam or config.spam.learn_ham
        else None,
    )

"""The one configuration object, loaded from one TOML file.

Every field has a default; `cryptmail` runs with no file at all on the embedded
defaults (SQLite and a local blob directory under the data directory). The loader
rejects unknown keys, wrong types and impossible combinations with the file, the key
path and the reason. `docs/configuration.md` is checked against these docstrings by
`tests/test_config.py`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptmail.errors import ConfigError, KdfParametersRefused

Curve = Literal["x25519", "prime256v1", "secp384r1", "secp521r1"]


@dataclass(frozen=True)
class Argon2Params:
    """Argon2 cost (RFC 9106): of one key slot, of a password hash, or of new ones.

    The one parameter type of every layer: `Argon2Config` is one, so the configured
    value goes to the key slots and to the password hashes as it is.
    """

    memory_kib: int
    time_cost: int
    parallelism: int

    def check_ceiling(self, max_memory_kib: int, max_time_cost: int) -> None:
        """Refuse, before any work, parameters above the configured ceiling."""
        if (
            self.memory_kib > max_memory_kib
            or self.time_cost > max_time_cost
            or not 1 <= self.parallelism <= 64
            or self.memory_kib < 8 * self.parallelism
            or self.time_cost < 1
        ):
            raise KdfParametersRefused(
                f"key slot asks for Argon2id m={self.memory_kib} KiB t={self.time_cost} "
                f"p={self.parallelism}, outside the allowed range (ceiling "
                f"m={max_memory_kib} KiB t={max_time_cost}); raise crypto.argon2.max_* "
                "only if you created such slots on purpose"
            )


@dataclass(frozen=True)
class Argon2Config(Argon2Params):
    """Argon2id cost for new key slots. Each slot stores its own parameters."""

    memory_kib: int = 47104
    """Memory per derivation in KiB (default 46 MiB; OWASP's minimum is 19 MiB)."""
    time_cost: int = 2
    """Passes over the memory (OWASP: at least 2 at 19 MiB)."""
    parallelism: int = 2
    """Lanes, each on its own thread: 2 halves a login's wait at the same cost per guess."""
    max_memory_kib: int = 1048576
    """Ceiling checked before unlocking a stored slot (refuses a planted 100 GiB slot)."""
    max_time_cost: int = 16
    """Ceiling for a stored slot's passes."""
    max_concurrent: int = 4
    """Derivations running at once; more logins queue."""
    max_queued: int = 256
    """Derivations waiting for a free place; beyond that a login is refused at once
    (IMAP `NO [UNAVAILABLE]`, web 503 with Retry-After) instead of queueing without end.
    A waiting login costs no memory (`serve` derives in child processes); 256 lets a
    burst of 100 first logins through (32 refused 64 of them, docs/configuration.md)."""
    process_idle_s: float = 60.0
    """`serve` runs each derivation in a small hashing process (an interpreter with only
    argon2-cffi, started on demand), so its own memory does not grow by memory_kib per
    login; one exits after this many idle seconds. 0: derivations run in the server."""


@dataclass(frozen=True)
class CryptoConfig:
    """Keys made for new users."""

    curve: Curve = "x25519"
    """Curve of new key pairs: x25519 (fastest), prime256v1, secp384r1 or secp521r1."""
    argon2: Argon2Config = field(default_factory=Argon2Config)
    """Argon2id parameters for password, recovery and app-password slots."""
    rehash_weak_hashes: bool = True
    """Replace a weaker virtual_users.password (e.g. bcrypt cost 5) with {ARGON2ID} at login."""


@dataclass(frozen=True)
class DatabaseConfig:
    """Where users, keys and the encrypted index live."""

    url: str = ""
    """SQLAlchemy URL. Empty: SQLite file `cryptmail.db` in the data directory.
    Examples: `mysql+pymysql://mailadmin:PW@127.0.0.1/mailserver`,
    `postgresql://cryptmail@127.0.0.1/cryptmail`."""


@dataclass(frozen=True)
class BlobsConfig:
    """Where message blobs live."""

    backend: Literal["local", "s3"] = "local"
    """`local`: a directory (default `blobs/` in the data directory); `s3`: an S3 bucket."""
    path: str = ""
    """Directory for the local backend; empty means `<data dir>/blobs`."""
    s3_endpoint: str = ""
    """S3 endpoint URL (MinIO, Garage, Ceph RGW, AWS)."""
    s3_bucket: str = ""
    """S3 bucket name; it must exist already."""
    s3_region: str = "us-east-1"
    """Region the requests are signed for (AWS needs the bucket's own; others accept any)."""
    s3_access_key_file: str = ""
    """File holding the S3 access key id (required for `s3`)."""
    s3_secret_key_file: str = ""
    """File holding the S3 secret key (required for `s3`); keep it mode 600."""


@dataclass(frozen=True)
class LmtpConfig:
    """The LMTP listener Postfix delivers to."""

    listen: str = ""
    """`HOST:PORT` or `unix:/path`; empty: not started unless given on the command line."""
    max_message_bytes: int = 104857600
    """Largest message accepted (SIZE), 100 MiB."""
    max_connections: int = 64
    """Concurrent LMTP connections per delivering process (the main one or a worker)."""
    processes: int = 0
    """LMTP delivering processes; 0: two per CPU core. Each delivers one message at a
    time and waits for the disk (fsync of the blob, its directory and the database's
    log) about a third of that time, so with one per core a core idled a quarter of
    the time at eight connections. Workers start on demand (below), so the second of a
    core starts only when connections outnumber the running workers. With
    `deliver_in_main` the main process is the first of them."""
    process_idle_s: float = 60.0
    """Workers on demand: a worker process (a new interpreter, about 1 s of CPU) starts
    when a connection waits and no worker runs, and another, up to `processes`, while
    every delivering process holds a connection and more come; a worker that held no
    connection for this many seconds exits, so an idle `serve` is one process. 0:
    `processes` workers forked at the start deliver, always running."""
    deliver_in_main: bool = False
    """With workers on demand, the main process delivers too, as the first of
    `processes`: no wait for a worker's start, but mail from the Internet is then parsed
    (MIME, Sieve) in the process that holds the unlocked keys of IMAP and web sessions,
    and IMAP shares its loop with deliveries (docs/security.md, docs/benchmarks.md)."""
    socket_group: str = ""
    """Group (name or number) of a Unix `listen` socket, which is mode 0660: whoever can
    connect can deliver mail. Empty: the data directory's group. With Postfix: `postfix`."""
    recipient_cache_s: float = 1.0
    """How long a delivering process reuses the users RCPT found for an address (aliases
    resolved, key, INBOX) for the next messages to it; 0: every RCPT looks them up. An
    alias change reaches delivery within this time; a key change or a switch of `crypt`
    is checked again at each commit, so no copy is sealed to a replaced key or stored
    plain after a switch to 2, and Sieve scripts are read for every message."""
    recipient_delimiter: str = "+"
    """Characters that start an address's detail, as Postfix's `recipient_delimiter`:
    `user+tag@domain` reaches `user@domain` (an alias or user of the full address wins),
    and Sieve's subaddress tests see `tag`. Empty: off."""

    @property
    def process_count(self) -> int:
        """`processes`, with 0 resolved for the CPU cores this process may use."""
        return self.processes or 2 * len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class SaslConfig:
    """SMTP AUTH for Postfix (`smtpd_sasl_type = dovecot`): Dovecot's auth protocol."""

    listen: str = ""
    """`unix:/path` (with Postfix's chrooted smtpd: under its queue directory, e.g.
    `unix:/var/spool/postfix/private/auth`, and `smtpd_sasl_path = private/auth`) or a
    loopback `HOST:PORT` (`smtpd_sasl_path = inet:HOST:PORT`); empty: off."""
    socket_group: str = ""
    """Group (name or number) of a Unix `listen` socket, which is mode 0660: whoever can
    connect can try passwords. Empty: the data directory's group. With Postfix: `postfix`."""
    max_connections: int = 256
    """Connections at once (Postfix opens one per smtpd process)."""


@dataclass(frozen=True)
class SieveConfig:
    """Sieve at delivery (RFC 5228): a global script before the user's active script and
    one after it, as Pigeonhole's sieve_before and sieve_after."""

    before: str = ""
    """Path of the script run before the user's; empty: none. Read and compiled when
    the LMTP workers start; a script that does not compile stops the start."""
    after: str = ""
    """Path of the script run after the user's (ISPmail's Junk filing); empty: none."""
    global_dir: str = ""
    """Directory of the scripts `include :global "name"` reads (`name.sieve`)."""
    smtp_relay: str = ""
    """`HOST:PORT` of the SMTP server (Postfix) that sends redirects and vacation
    replies; empty: neither is sent, the message is kept and the log says why."""
    max_script_size: int = 262144
    """Largest script accepted, in bytes (256 KiB)."""
    max_commands: int = 10000
    """Most commands and tests in one script."""
    max_actions: int = 32
    """Most actions one delivery's scripts may take together (Pigeonhole's default)."""
    max_redirects: int = 4
    """Most redirects per message (Pigeonhole's default)."""


@dataclass(frozen=True)
class QuotaConfig:
    """virtual_users.quota (bytes; 0 = none) is enforced at delivery, APPEND and COPY."""

    messages: int = 0
    """Most messages a user may keep in all folders together; 0: no limit. One limit for
    every user, as Dovecot's `quota_rule = *:messages=N`; reported as the MESSAGE
    resource of IMAP QUOTA, enforced at delivery (452), APPEND, COPY (`NO [OVERQUOTA]`)."""
    warnings: tuple[int, ...] = (80, 95)
    """Percentages of the quota: a delivery that takes the usage past one of them is
    followed by a warning message in the user's INBOX (once per crossing). Empty: none."""


@dataclass(frozen=True)
class SpamConfig:
    """Spam learning: messages moved into Junk are learned as spam, out of Junk (not to
    Trash) as ham, by a command that reads the message on standard input."""

    learn_spam: tuple[str, ...] = ()
    """The command and its arguments (no shell), e.g. `["rspamc", "learn_spam"]`; empty: off."""
    learn_ham: tuple[str, ...] = ()
    """The same for ham, e.g. `["rspamc", "learn_ham"]`; empty: off."""
    max_running: int = 2
    """Commands running at once."""
    max_queued: int = 1000
    """Messages waiting to be learned; beyond that they are skipped (and logged)."""
    timeout_s: int = 30
    """Seconds a command may run before it is killed."""
    max_message_bytes: int = 10485760
    """Larger messages are not learned (10 MiB)."""


@dataclass(frozen=True)
class Pop3Config:
    """The POP3 listeners (RFC 1939 with STLS, UIDL, TOP, SASL PLAIN; RFC 2449). TLS uses
    IMAP's certificate (`imap.tls_cert`, or the self-signed one)."""

    listen: str = ""
    """Plain POP3 (STLS offered) as `HOST:PORT`, usually port 110; empty: off."""
    listen_tls: str = ""
    """Implicit-TLS POP3 as `HOST:PORT`, usually port 995; empty: off."""
    idle_timeout_s: int = 600
    """Idle time before a connection is closed (RFC 1939: at least 10 minutes)."""
    max_connections_per_ip: int = 20
    """Connections from one client address."""
    max_connections: int = 1000
    """Connections from all clients together (both POP3 listeners count)."""
    allow_plaintext_login_on_loopback: bool = True
    """Allow USER/PASS and AUTH PLAIN before STLS from 127.0.0.0/8 and ::1 (as Dovecot
    does)."""


@dataclass(frozen=True)
class ManagesieveConfig:
    """The ManageSieve listener (RFC 5804, STARTTLS, SASL PLAIN) and the limits on
    users' Sieve scripts. TLS uses IMAP's certificate (`imap.tls_cert`, or the
    self-signed one)."""

    listen: str = ""
    """`HOST:PORT`, usually port 4190; empty: off."""
    max_scripts: int = 100
    """Scripts one user may keep."""
    idle_timeout_s: int = 1800
    """Idle time before a connection is closed."""
    max_connections_per_ip: int = 20
    """Connections from one client address."""
    max_connections: int = 1000
    """Connections from all clients together."""
    allow_plaintext_login_on_loopback: bool = True
    """Allow AUTHENTICATE before STARTTLS from 127.0.0.0/8 and ::1 (as Dovecot does)."""


@dataclass(frozen=True)
class ImapConfig:
    """The IMAP listeners."""

    listen: str = ""
    """Plain IMAP (STARTTLS offered) as `HOST:PORT`; empty: off."""
    listen_tls: str = ""
    """Implicit-TLS IMAP as `HOST:PORT`; empty: off."""
    tls_cert: str = ""
    """PEM certificate; empty: a self-signed one is made in the data directory."""
    tls_key: str = ""
    """PEM private key for `tls_cert`."""
    append_limit: int = 52428800
    """Largest APPEND accepted after login (APPENDLIMIT), 50 MiB."""
    idle_timeout_s: int = 1800
    """Idle time before a connection is closed (RFC 3501: at least 30 minutes)."""
    max_connections_per_ip: int = 50
    """Connections from one client address."""
    max_connections: int = 5000
    """Connections from all clients together (each IMAP listener of the process counts);
    more are told `* BYE` and closed."""
    allow_plaintext_login_on_loopback: bool = True
    """Allow LOGIN before TLS from 127.0.0.0/8 and ::1 (as Dovecot does)."""
    fts_index: bool = True
    """Keep the encrypted full-text index that lets SEARCH skip messages (built while the
    user has a session; see docs/security.md, "Search index")."""
    fts_background_percent: int = 50
    """Share of its time (1-100) a user's background indexing may run while they have a
    session; it sleeps the rest."""
    fts_max_message_size: int = 10485760
    """Larger messages are not indexed (SEARCH reads them each time), 10 MiB."""
    fts_loaded_users: int = 200
    """Users whose search index words stay in memory between searches (the most recent
    searchers); others keep only which mails are indexed and read the words again."""
    notify_max_mailboxes: int = 1000
    """Most mailboxes one NOTIFY (RFC 5465) may name, or watch for MailboxName and
    SubscriptionChange, or answer with STATUS; beyond it NOTIFY SET is refused with
    `NO [NOTIFICATIONOVERFLOW]`. Bounds what a session keeps in memory."""
    notify_max_pending: int = 4096
    """Changes a NOTIFY session may fall behind by (while a command runs or the client
    does not read); beyond it the session gets `* OK [NOTIFICATIONOVERFLOW]` and its
    notifications end, as if NOTIFY NONE."""


@dataclass(frozen=True)
class UrlauthConfig:
    """URLAUTH (RFC 4467): message parts a user hands to a submission server by URL."""

    submit_users: tuple[str, ...] = ()
    """Accounts (addresses) of submission servers: a session logged in as one of them
    may URLFETCH URLs made for `submit+USER`, on behalf of any user. Empty: such URLs
    can be made but only their owner can fetch them."""
    max_urls_per_user: int = 1000
    """URLs one user may hold at once (expired ones are pruned); GENURLAUTH beyond it
    answers NO [LIMIT] until RESETKEY."""


@dataclass(frozen=True)
class WebConfig:
    """The self-service web pages and JSON API."""

    listen: str = ""
    """`HOST:PORT`; empty: off."""
    admin_token_file: str = ""
    """File holding the admin API token; empty: admin API off."""
    secure_cookies: bool = True
    """Mark cookies Secure (turn off only for plain-HTTP tests on loopback)."""
    min_password_length: int = 10
    """Shortest new password accepted."""
    tls_cert: str = ""
    """PEM certificate for HTTPS served by cryptmail itself; empty: plain HTTP, for a TLS
    reverse proxy in front (the usual setup) or tests on loopback."""
    tls_key: str = ""
    """PEM private key for `tls_cert`."""
    trusted_proxies: str = ""
    """Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed; empty: the client address is the connection's."""


@dataclass(frozen=True)
class AuthConfig:
    """The login throttle shared by IMAP and the web: token buckets that only failed
    logins empty, one per address tried and one per client address."""

    address_burst: int = 5
    """Wrong passwords for one address before its logins are refused for a while."""
    address_refill_s: int = 20
    """Seconds until one more wrong password is allowed for an address."""
    client_burst: int = 50
    """Wrong passwords from one client address (IPv6: its /64), for any addresses, before
    its logins are refused for a while; sized for an office behind one NAT address."""
    client_refill_s: int = 6
    """Seconds until one more wrong password is allowed from a client address."""
    trusted_networks: tuple[str, ...] = ()
    """Networks (CIDR, e.g. `["10.0.0.5/32"]`) of webmail hosts that log in for many
    people: they have no client bucket of their own, and their IMAP `ID` field
    `x-originating-ip` names the client to throttle instead. Empty: none."""
    cache_ttl_s: int = 300
    """Seconds a user's unlocked account stays in memory after their last session ends,
    so a repeated login with the same password costs a keyed hash instead of Argon2id
    (see docs/security.md, "Login cache"). 0: dropped with the last session."""
    cache_max_users: int = 10000
    """Most users kept unlocked after their last session; beyond it the least recently
    used go first."""
    import_stale_s: int = 120
    """Seconds after which a first-login import (`import maildir --at-first-login`)
    whose process stopped beating its heartbeat counts as dead: the user's next login
    resumes it. A running import beats every second."""
    shared_buckets: Literal["auto", "database", "memory"] = "auto"
    """Where the failure buckets live: `database` (table cm_login_failures, so a
    password guessed on one node counts on every node; one small query per login, one
    write per failure), `memory` (this process only), `auto`: `database` on
    PostgreSQL and MariaDB/MySQL, `memory` on SQLite."""


@dataclass(frozen=True)
class EventsConfig:
    """How every node of a scale-out setup hears at once of changes made elsewhere (new
    mail, flags, expunges, mailboxes, credential changes): the change log (see
    docs/operations.md, "Scale-out topology")."""

    mode: Literal["auto", "notify", "poll", "off"] = "auto"
    """`notify`: PostgreSQL LISTEN/NOTIFY, one connection per node; `poll`: read the
    change log every `poll_interval_ms` (MariaDB/MySQL, SQLite); `auto`: `notify` on
    PostgreSQL, `poll` elsewhere; `off`: only this node's own changes push, and IDLE
    and the credential watcher poll the database every 2 s instead."""
    poll_interval_ms: int = 250
    """Milliseconds between two reads of the change log in `poll` mode: one query per
    node, not per session."""
    reconnect_ms: int = 1000
    """Milliseconds before a lost LISTEN connection is opened again (then the node
    catches up from the log, missing nothing)."""
    check_interval_s: int = 10
    """Seconds between two checks that the LISTEN connection is alive (one round trip,
    which also catches up any change whose NOTIFY was missed)."""
    safety_poll_s: int = 30
    """Seconds between IDLE's and the credential watcher's own reads of the database,
    behind the events (0: never). Only used while the events are on."""
    keep_rows: int = 100000
    """Most change-log rows kept; older ones are pruned every minute."""
    keep_s: int = 3600
    """Seconds a change-log row is kept at most. A node cut off longer than that wakes
    every IDLE session and checks every login once it is back, instead of replaying."""


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics, on a listener of their own (never the public web port)."""

    enabled: bool = False
    """Serve `/metrics` (Prometheus text format) on `metrics.listen`."""
    listen: str = "127.0.0.1:9154"
    """`HOST:PORT` of the metrics listener; keep it on loopback or a monitoring network:
    the counts say when and how much mail and how many logins there are."""


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""One line per record, the same for the command line, `serve` and its workers."""


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    data_dir: str = "cryptmail-data"
    """Directory for the SQLite database, blobs and the self-signed certificate."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the server."""
    log_format: Literal["text", "json"] = "text"
    """`text`: one line per event; `json`: one JSON object per line (fields `time`,
    `level`, `logger`, `message`, `pid`, `exception`), for a log collector."""
    server_key_file: str = ""
    """File holding the server key (32 random bytes, mode 600, made at first start), kept
    outside the database: it authenticates the public key and `crypt` that delivery
    reads. Empty: `server.key` in the data directory. Every node that delivers mail
    needs the same file; back it up with, but not in, the database dumps."""
    hostname: str = ""
    """Name of this server in the self-signed certificate (its CN and first SAN); empty:
    the machine's fully qualified name."""
    crypto: CryptoConfig = field(default_factory=CryptoConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    blobs: BlobsConfig = field(default_factory=BlobsConfig)
    lmtp: LmtpConfig = field(default_factory=LmtpConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    urlauth: UrlauthConfig = field(default_factory=UrlauthConfig)
    web: WebConfig = field(default_factory=WebConfig)
    sasl: SaslConfig = field(default_factory=SaslConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    spam: SpamConfig = field(default_factory=SpamConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    managesieve: ManagesieveConfig = field(default_factory=ManagesieveConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sieve: SieveConfig = field(default_factory=SieveConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_path / 'cryptmail.db').resolve()}"

    @property
    def server_key_path(self) -> Path:
        return Path(self.server_key_file) if self.server_key_file else self.data_path / "server.key"

    @property
    def blob_path(self) -> Path:
        return Path(self.blobs.path) if self.blobs.path else self.data_path / "blobs"


T = TypeVar("T")


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Load and validate the TOML file at `path` (or the defaults), then apply overrides.

    Raises ConfigError naming the file, the key path and the reason.
    """
    raw: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: the configuration file does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    for key, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    config = _build(Config, raw, source, "")
    _check(config, source)
    return config


def _build(cls: type[T], raw: dict[str, Any], source: str, prefix: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        path = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, source, path + ".")  # type: ignore[arg-type]
        else:
            values[name] = _coerce(hint, value, source, path)
    return cls(**values)


def _coerce(hint: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{source}: {path} = {value!r} is not one of {choices}")
        return value
    if isinstance(hint, types.UnionType):
        raise ConfigError(f"{source}: {path}: union types are not configurable")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {path} must be true or false, not {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {path} must be an integer, not {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{source}: {path} must be a string, not {value!r}")
    if origin is tuple and typing.get_args(hint)[0] is int:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{source}: {path} must be a list of integers, not {value!r}")
        return tuple(value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {path} must be a list of strings, not {value!r}")
        return tuple(value)
    return value


def _check(config: Config, source: str) -> None:
    if config.spam.max_running < 1 or config.spam.max_queued < 1:
        raise ConfigError(f"{source}: spam.max_running and spam.max_queued must be at least 1")
    if config.quota.messages < 0:
        raise ConfigError(f"{source}: quota.messages is a number of messages, 0 for no limit")
    if any(not 0 < percent <= 100 for percent in config.quota.warnings):
        raise ConfigError(f"{source}: quota.warnings are percentages from 1 to 100")
    a = config.crypto.argon2
    if a.memory_kib < 19456 or a.time_cost < 2 and a.memory_kib < 47104:
        raise ConfigError(
            f"{source}: crypto.argon2 below OWASP's minimum (19 MiB with t=2, or 46 MiB with t=1)"
        )
    if a.memory_kib > a.max_memory_kib or a.time_cost > a.max_time_cost:
        raise ConfigError(f"{source}: crypto.argon2 parameters exceed their own max_* ceilings")
    if a.parallelism < 1 or a.max_concurrent < 1:
        raise ConfigError(f"{source}: crypto.argon2.parallelism and max_concurrent must be >= 1")
    b = config.blobs
    if b.backend == "s3" and not (
        b.s3_endpoint and b.s3_bucket and b.s3_access_key_file and b.s3_secret_key_file
    ):
        raise ConfigError(
            f"{source}: blobs.backend = 's3' needs blobs.s3_endpoint, s3_bucket, "
            "s3_access_key_file and s3_secret_key_file"
        )
    if bool(config.imap.tls_cert) != bool(config.imap.tls_key):
        raise ConfigError(f"{source}: imap.tls_cert and imap.tls_key go together")
    if a.max_queued < 0:
        raise ConfigError(f"{source}: crypto.argon2.max_queued must be >= 0")
    if a.process_idle_s < 0:
        raise ConfigError(f"{source}: crypto.argon2.process_idle_s must be >= 0 (0: no process)")
    if config.urlauth.max_urls_per_user < 1:
        raise ConfigError(f"{source}: urlauth.max_urls_per_user must be >= 1")
    if config.imap.max_connections < 1:
        raise ConfigError(f"{source}: imap.max_connections must be >= 1")
    if not 1 <= config.imap.fts_background_percent <= 100:
        raise ConfigError(f"{source}: imap.fts_background_percent must be from 1 to 100")
    if config.imap.fts_loaded_users < 1:
        raise ConfigError(f"{source}: imap.fts_loaded_users must be >= 1")
    _check_auth(config.auth, source)
    _check_events(config.events, source)
    s = config.sieve
    if min(s.max_script_size, s.max_commands, s.max_actions) < 1 or s.max_redirects < 0:
        raise ConfigError(
            f"{source}: sieve.max_script_size, max_commands and max_actions must be >= 1, "
            "max_redirects >= 0"
        )
    m = config.managesieve
    if min(m.max_scripts, m.max_connections, m.max_connections_per_ip) < 1:
        raise ConfigError(
            f"{source}: managesieve.max_scripts, max_connections and "
            "max_connections_per_ip must be >= 1"
        )
    if config.lmtp.recipient_cache_s < 0:
        raise ConfigError(f"{source}: lmtp.recipient_cache_s must be >= 0 (0: off)")
    if config.lmtp.processes < 0:
        raise ConfigError(f"{source}: lmtp.processes must be >= 0 (0: two per CPU core)")
    if config.lmtp.process_idle_s < 0:
        raise ConfigError(f"{source}: lmtp.process_idle_s must be >= 0 (0: workers always run)")


def _check_events(events: EventsConfig, source: str) -> None:
    if min(events.poll_interval_ms, events.reconnect_ms, events.check_interval_s) < 1:
        raise ConfigError(
            f"{source}: events.poll_interval_ms, reconnect_ms and check_interval_s must be >= 1"
        )
    if events.safety_poll_s < 0 or events.keep_rows < 1000 or events.keep_s < 60:
        raise ConfigError(
            f"{source}: events.safety_poll_s must be >= 0 (0: never), events.keep_rows "
            ">= 1000 and events.keep_s >= 60"
        )


def _check_auth(auth: AuthConfig, source: str) -> None:
    if min(auth.address_burst, auth.client_burst) < 1:
        raise ConfigError(f"{source}: auth.address_burst and auth.client_burst must be >= 1")
    if min(auth.address_refill_s, auth.client_refill_s) < 1:
        raise ConfigError(f"{source}: auth.address_refill_s and client_refill_s must be >= 1")
    if auth.cache_ttl_s < 0 or auth.cache_max_users < 1:
        raise ConfigError(
            f"{source}: auth.cache_ttl_s must be >= 0 (0: off) and auth.cache_max_users >= 1"
        )
    for network in auth.trusted_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"{source}: auth.trusted_networks: {network!r} is not a network "
                "(expected CIDR such as 10.0.0.5/32 or 2001:db8::/64)"
            ) from None

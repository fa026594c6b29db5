"""The running server: what every listener shares, which listeners run, and their life.

One engine, one blob store, one change bus, one login throttle, one cache of unlocked
accounts and one credential watcher are shared by every listener (a password change on
the web drops IMAP's cached credentials of that user; a failed login at the web form
counts against IMAP too). One change feed (`_events`) brings the changes of every
other process sharing the database (other nodes, the CLI) to the bus and the watcher
at once; with `events.mode = "off"`, IDLE and the watcher poll every two seconds
instead. The
listeners and the housekeeping chores run under one `asyncio.TaskGroup`: SIGTERM or
SIGINT, or a listener that stops on its own, stops them all gracefully: no new
connections, deliveries in flight finish and get their replies.

LMTP is served on the listener this process binds (`LmtpWorkers`) by workers it starts
on demand (and this process, with `lmtp.deliver_in_main`), or by workers forked at the
start (`lmtp.process_idle_s`); this process serves IMAP, POP3, SASL, ManageSieve and the
web pages, and `/metrics` on a listener of its own when `metrics.enabled`
(`MetricsListener`).

Under systemd (`Type=notify`) it reports READY=1 once every listener accepts, pings the
watchdog, and on SIGHUP loads the TLS certificate files again (`reload_ssl_context`, and the web
listener's own with `WebServer.reload_tls`):
new handshakes present the renewed certificate, open sessions go on (`_notify`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import kdf_load, run_blocking
from cryptmail.config import LOG_FORMAT, Config
from cryptmail.errors import ConfigError, StoreUnavailable
from cryptmail.hashing import use_hashing_processes, use_this_process
from cryptmail.imap import ImapListener, make_context
from cryptmail.keys import CredentialWatcher, LoginThrottle, UnlockedAccounts
from cryptmail.metrics import install_metrics
from cryptmail.serve._events import ChangeFeed, dispatch_to, feed_mode, prune_forever
from cryptmail.serve._hardening import forbid_core_dumps, keep_out_of_swap
from cryptmail.serve._housekeeping import (
    clean_at_start,
    expire_tags_forever,
    sweep_forever,
    zero_deleted_forever,
)
from cryptmail.serve._listener import Listener
from cryptmail.serve._lmtp_worker import WorkerSetup
from cryptmail.serve._lmtp_workers import LmtpWorkers, logger_levels
from cryptmail.serve._memory import settle_gc, tune_malloc
from cryptmail.serve._notify import SystemdNotifier
from cryptmail.serve._prefork import DormantWorker
from cryptmail.sockets import parse_address, socket_group_id
from cryptmail.store import ChangeBus, FilingNotes, FirstLoginImports
from cryptmail.store.blobs import BlobStore, open_blob_store
from cryptmail.tls import make_ssl_context, reload_ssl_context
from cryptmail.web import Readiness, WebServer

if TYPE_CHECKING:
    from cryptmail.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

GRACE_S = 60.0
"""How long deliveries and commands in flight get to finish at a stop."""


@dataclass(frozen=True)
class Addresses:
    """Where each listener listens; an empty string turns that listener off."""

    lmtp: str = ""
    imap: str = ""
    imaps: str = ""
    web: str = ""
    sasl: str = ""
    pop3: str = ""
    pop3s: str = ""
    managesieve: str = ""


@dataclass(frozen=True)
class Shared:
    """What every listener of one server shares."""

    config: Config
    engine: AsyncEngine
    blobs: BlobStore
    bus: ChangeBus
    throttle: LoginThrottle
    accounts: UnlockedAccounts
    watcher: CredentialWatcher | None = None  # None: IMAP's own, one per engine
    imports: FirstLoginImports | None = None  # None: staged imports wait
    idle_poll_s: float | None = 2.0
    """IDLE's own poll (None: never); longer when the change feed runs."""
    tls: ssl.SSLContext | None = None  # None: IMAP and POP3 make their own
    metrics: PrometheusMetrics | None = None  # None: no metrics listener
    dormant: tuple[DormantWorker, ...] = ()
    """LMTP workers forked at the start (`_prefork`); more start as new interpreters."""


def _host_port(address: str) -> tuple[str, int]:
    target = parse_address(address)
    if not isinstance(target, tuple):
        raise ConfigError(f"{address!r}: this listener takes HOST:PORT, not a Unix socket")
    return target


def _blob_readiness(blobs: BlobStore) -> Readiness:
    """`/readyz`'s check of the blob store (the web package does not know it)."""

    async def check() -> list[str]:
        try:
            await blobs.ready()
        except StoreUnavailable as exc:
            log.warning("readiness: %s", exc)
            return ["blob store"]
        return []

    return check


def make_listeners(shared: Shared, addresses: Addresses) -> list[Listener]:
    """The listeners `addresses` turn on, each given what they share. Raises ConfigError."""
    config = shared.config
    listeners: list[Listener] = []
    if addresses.lmtp:
        setup = WorkerSetup(config, LOG_FORMAT, logger_levels(), GRACE_S)
        listeners.append(
            LmtpWorkers(
                setup,
                addresses.lmtp,
                config.lmtp.process_count,
                shared.bus,
                list(shared.dormant),
                engine=shared.engine,
                blobs=shared.blobs,
            )
        )
    if addresses.imap or addresses.imaps:
        context = make_context(
            config,
            engine=shared.engine,
            blobs=shared.blobs,
            bus=shared.bus,
            throttle=shared.throttle,
            accounts=shared.accounts,
            watcher=shared.watcher,
            imports=shared.imports,
            idle_poll_s=shared.idle_poll_s,
            ssl_context=shared.tls,
        )
        for address, tls in ((addresses.imap, False), (addresses.imaps, True)):
            if address:
                host, port = _host_port(address)
                listeners.append(ImapListener(context, host, port, implicit_tls=tls))
    if addresses.web:
        host, port = _host_port(addresses.web)
        listeners.append(
            WebServer(
                config,
                host,
                port,
                engine=shared.engine,
                throttle=shared.throttle,
                accounts=shared.accounts,
                readiness=_blob_readiness(shared.blobs),
                imports=shared.imports,
            )
        )
    # SASL, POP3 and ManageSieve imported only when they listen: every module imported
    # at the start is in the image the LMTP workers are forked from (`_prefork`).
    if addresses.sasl:
        from cryptmail.sasl import SaslChecker, SaslServer

        checker = SaslChecker(shared.engine, config.crypto, shared.throttle, shared.imports)
        group = socket_group_id(
            config.sasl.socket_group, config.data_path, setting="sasl.socket_group"
        )
        listeners.append(
            SaslServer(
                checker, addresses.sasl, group=group, max_connections=config.sasl.max_connections
            )
        )
    if addresses.pop3 or addresses.pop3s:
        from cryptmail.pop3 import Pop3Listener, make_pop3_context

        pop3 = make_pop3_context(
            config,
            engine=shared.engine,
            blobs=shared.blobs,
            bus=shared.bus,
            throttle=shared.throttle,
            accounts=shared.accounts,
            imports=shared.imports,
            ssl_context=shared.tls,
        )
        for address, tls in ((addresses.pop3, False), (addresses.pop3s, True)):
            if address:
                host, port = _host_port(address)
                listeners.append(Pop3Listener(pop3, host, port, implicit_tls=tls))
    if addresses.managesieve:
        from cryptmail.managesieve import ManagesieveListener, make_managesieve_context

        host, port = _host_port(addresses.managesieve)
        sieve = make_managesieve_context(
            config, engine=shared.engine, throttle=shared.throttle, watcher=shared.watcher
        )
        listeners.append(ManagesieveListener(sieve, host, port))
    if not listeners:
        raise ConfigError(
            "no listener to run: give --lmtp, --imap, --imaps, --web, --sasl, --pop3, "
            "--pop3s or --managesieve"
        )
    if shared.metrics is not None and config.metrics.enabled:
        # Here, not at the top: prometheus_client only where /metrics is served.
        from cryptmail.serve._metrics_listener import MetricsListener

        host, port = _host_port(config.metrics.listen)
        listeners.append(MetricsListener(shared.metrics, host, port))
    return listeners


def _pool_use(engine: AsyncEngine) -> tuple[int, int]:
    """(checked out, idle) connections of the engine's pool; SQLite's pools that keep
    no count report (0, 0)."""
    pool = engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    checked_in = getattr(pool, "checkedin", None)
    if checked_out is None or checked_in is None:
        return 0, 0
    return int(checked_out()), int(checked_in())


async def run_server(
    config: Config,
    engine: AsyncEngine,
    addresses: Addresses,
    dormant: Sequence[DormantWorker] = (),
    tls: ssl.SSLContext | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT (or until a listener stops on its own); return the
    exit code. Raises ConfigError or OSError when a listener cannot start. The LMTP
    workers are the `dormant` ones forked at the start (`prefork_workers`, called
    before anything runs) while they last, then new interpreters. IMAP's and POP3's
    `tls` context is made here when not given (`serve` makes it before the fork)."""
    forbid_core_dumps()  # before any key is unlocked in this process
    keep_out_of_swap()
    if config.crypto.argon2.process_idle_s > 0:
        # Argon2's memory (46 MiB a login by default) in small child processes, not here.
        use_hashing_processes(config.crypto.argon2.process_idle_s)
    # Off the loop: building an S3 client imports boto3 and reads its data files (~0.3 s).
    blobs = await run_blocking(open_blob_store, config)
    metrics = None
    if config.metrics.enabled:
        from cryptmail.metrics import PrometheusMetrics

        metrics = PrometheusMetrics(kdf_load=kdf_load, pool_use=lambda: _pool_use(engine))
        install_metrics(metrics)  # before the LMTP workers start: they report to it
    if tls is None and (addresses.imap or addresses.imaps or addresses.pop3 or addresses.pop3s):
        tls = await run_blocking(make_ssl_context, config)  # once: one fingerprint line
    events = config.events
    feeding = feed_mode(events, engine.dialect.name) != "off"
    # With the feed, other processes' changes arrive at once: the polls are a safety net.
    safety_s = float(events.safety_poll_s) if events.safety_poll_s else None
    bus = ChangeBus()
    watcher = CredentialWatcher(engine, poll_s=(safety_s or 86400.0) if feeding else 2.0)
    shared = Shared(
        config=config,
        engine=engine,
        blobs=blobs,
        bus=bus,
        throttle=LoginThrottle.from_config(config, engine),
        accounts=UnlockedAccounts.from_config(engine, config),
        watcher=watcher,
        imports=FirstLoginImports(
            engine,
            blobs,
            stale_after_s=config.auth.import_stale_s,
            filing=FilingNotes(engine, bus),
        ),
        idle_poll_s=safety_s if feeding else 2.0,
        tls=tls,
        metrics=metrics,
        dormant=tuple(dormant),
    )
    feed = ChangeFeed(
        engine, events, dispatch_to(bus, watcher), lambda: _history_lost(bus, watcher)
    )
    listeners = make_listeners(shared, addresses)
    notifier = SystemdNotifier.from_environment()
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)
    web = [listener for listener in listeners if isinstance(listener, WebServer)]
    loop.add_signal_handler(signal.SIGHUP, _reload, shared, web, notifier)
    try:
        await _run(shared, listeners, shutdown, feed, notifier)
    finally:
        if shared.imports is not None:
            await shared.imports.close()
        if shared.watcher is not None:
            await shared.watcher.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("cryptmail stopped")
    return 0


def _history_lost(bus: ChangeBus, watcher: CredentialWatcher) -> None:
    bus.wake_all()
    watcher.notice(None)


def _reload(shared: Shared, web: list[WebServer], notifier: SystemdNotifier) -> None:
    """SIGHUP: load the TLS certificates again (a renewal); nothing else is reloaded."""
    notifier.reloading()
    reloaded = False
    if shared.tls is not None:
        try:
            reload_ssl_context(shared.tls, shared.config)
            reloaded = True
        except ConfigError as exc:
            log.error("SIGHUP: %s", exc)
    for listener in web:
        try:
            reloaded = listener.reload_tls() or reloaded
        except ConfigError as exc:
            log.error("SIGHUP: web listener: %s", exc)
    if not reloaded:
        log.info("SIGHUP: no TLS certificate was reloaded (none configured, or see above)")
    notifier.notify("READY=1", "STATUS=serving")


async def _run(
    shared: Shared,
    listeners: list[Listener],
    shutdown: asyncio.Event,
    feed: ChangeFeed,
    notifier: SystemdNotifier,
) -> None:
    started: list[Listener] = []
    spool_dir: Path = shared.config.data_path / "spool"
    # Before the first listener: nothing of this server is in flight yet (why that makes
    # it safe: `clean_at_start`).
    await clean_at_start(shared.blobs, spool_dir)
    try:
        # Started one by one, before the task group, so that one that cannot bind
        # raises its own ConfigError or OSError for the command line to report.
        for listener in listeners:
            await listener.start()
            started.append(listener)
        async with asyncio.TaskGroup() as group:
            group.create_task(sweep_forever(shared.engine, shared.blobs, spool_dir, shutdown))
            group.create_task(expire_tags_forever(shared.engine, shutdown))
            group.create_task(zero_deleted_forever(shared.blobs, shutdown))
            group.create_task(feed.run(shutdown))
            group.create_task(
                prune_forever(shared.engine, shared.config.events, shared.throttle, shutdown)
            )
            for listener in started:
                group.create_task(_watch(listener, shutdown))
            group.create_task(notifier.watchdog_forever(shutdown))
            settle_gc()
            tune_malloc()
            log.info(
                "cryptmail serving; SIGTERM stops gracefully, SIGHUP reloads the TLS certificate"
            )
            notifier.notify("READY=1", f"STATUS=serving: {', '.join(lst.name for lst in started)}")
            await shutdown.wait()
            notifier.notify("STOPPING=1", "STATUS=stopping: finishing work in flight")
            await _stop_all(started)
            started.clear()
    finally:
        # A listener that failed to start, or a cancelled server: stop what runs.
        shutdown.set()
        await _stop_all(started)
        use_this_process()  # the hashing processes exit (end of input)


async def _watch(listener: Listener, shutdown: asyncio.Event) -> None:
    """A listener that ends on its own (an error, or a clean close before the stop)
    brings the whole server down, as a supervisor would rather restart it whole."""
    try:
        await listener.wait_closed()
    except Exception as exc:
        log.error("%s stopped: %s", listener.name, exc)
    finally:
        shutdown.set()


async def _stop_all(listeners: list[Listener]) -> None:
    """Stop the listeners side by side, each with the one grace period; one that fails
    to stop cleanly is logged and keeps none of the others from stopping."""
    results = await asyncio.gather(
        *(listener.stop(GRACE_S) for listener in listeners), return_exceptions=True
    )
    for listener, result in zip(listeners, results, strict=True):
        if isinstance(result, BaseException):
            log.error("%s did not stop cleanly: %s", listener.name, result)

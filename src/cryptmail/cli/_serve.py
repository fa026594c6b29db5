"""`cryptmail serve`: run the listeners (LMTP, and IMAP and web when built) until SIGTERM.

One engine, one blob store, one change bus, one login throttle and one cache of unlocked
accounts are shared by every listener (a password change on the web drops IMAP's cached
credentials of that user). At start and then hourly, a sweep removes spools left by a
crash (their key died with the process), blob temp files older than an hour, and orphan
blobs (no row names them: a crash between blob and row) older than a day, long past any
delivery, APPEND or import still in flight. SIGTERM or SIGINT stops gracefully: no new
connections, deliveries in flight finish and get their replies.

LMTP is served by worker processes on the listener this process binds
(`_lmtp_workers`, `lmtp.processes`); this one serves IMAP and the web pages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._lmtp_workers import LmtpWorkers, WorkerSetup, logger_levels
from cryptmail.cli._main import LOG_FORMAT
from cryptmail.cli._memory import settle_gc, tune_malloc
from cryptmail.cli._runtime import SubParsers, run_with_engine
from cryptmail.concurrency import run_blocking
from cryptmail.config import Config
from cryptmail.delivery import ConnectionShares, bind_listener, parse_address
from cryptmail.errors import ConfigError, CryptmailError
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.store import ChangeBus, expire_delivery_tags, sweep_orphans, sweep_spools
from cryptmail.store.blobs import BlobStore, open_blob_store

log = logging.getLogger(__name__)

DEFAULT_LMTP = "127.0.0.1:2424"
GRACE_S = 60.0
BIND_WAIT_S = 10.0
"""How long a restart waits for the LMTP port held by the workers of a killed `serve`,
which stop accepting at once but may still be finishing deliveries."""
SWEEP_EVERY_S = 3600.0
TAG_EXPIRY_EVERY_S = 300.0
"""How often delivery retry tags older than their hour are cleared."""
TEMP_GRACE_S = 3600.0
ORPHAN_GRACE_S = 86400.0


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("serve", help="run the LMTP, IMAP and web listeners")
    parser.add_argument("--lmtp", metavar="ADDR", help="HOST:PORT or unix:/path for LMTP")
    parser.add_argument("--imap", metavar="ADDR", help="HOST:PORT for IMAP (STARTTLS)")
    parser.add_argument("--imaps", metavar="ADDR", help="HOST:PORT for IMAP over TLS")
    parser.add_argument("--web", metavar="ADDR", help="HOST:PORT for the web pages")
    parser.set_defaults(handler=_serve)


def _optional(module: str, name: str) -> Callable[..., Coroutine[Any, Any, None]] | None:
    """A server entry point another package provides, or None while it is not built."""
    try:
        found: Any = importlib.import_module(module)
    except ModuleNotFoundError:
        return None
    entry = getattr(found, name, None)
    return entry if callable(entry) else None


def _host_port(address: str) -> tuple[str, int]:
    target = parse_address(address)
    if not isinstance(target, tuple):
        raise ConfigError(f"{address!r}: this listener takes HOST:PORT, not a Unix socket")
    return target


def _serve(args: argparse.Namespace) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        any_flag = any((args.lmtp, args.imap, args.imaps, args.web))
        lmtp = args.lmtp or ("" if any_flag else config.lmtp.listen or DEFAULT_LMTP)
        imap = args.imap or ("" if any_flag else config.imap.listen)
        imaps = args.imaps or ("" if any_flag else config.imap.listen_tls)
        web = args.web or ("" if any_flag else config.web.listen)
        return await _run(config, engine, lmtp=lmtp, imap=imap, imaps=imaps, web=web)

    return run_with_engine(args, work, server=True)


async def sweep_once(engine: AsyncEngine, blobs: BlobStore, spool_dir: Path) -> None:
    """One pass of the periodic sweep; the orphan rules are `store check --fix`'s."""
    spools = await run_blocking(sweep_spools, spool_dir)
    temps = await blobs.sweep_temp(TEMP_GRACE_S)
    orphans = await sweep_orphans(engine, blobs, grace_s=ORPHAN_GRACE_S)
    if spools or temps or orphans:
        log.info(
            "sweep removed %d spool(s), %d blob temp file(s) and %d orphan blob(s)",
            spools,
            temps,
            len(orphans),
        )


async def sweep_forever(
    engine: AsyncEngine, blobs: BlobStore, spool_dir: Path, shutdown: asyncio.Event
) -> None:
    """Sweep now, then every SWEEP_EVERY_S, until `shutdown` is set. A failed pass is
    logged and retried at the next interval: the sweep is housekeeping, never fatal."""
    while not shutdown.is_set():
        try:
            await sweep_once(engine, blobs, spool_dir)
        except (CryptmailError, OSError) as exc:
            log.warning("sweep failed (%s); retrying in %d s", type(exc).__name__, SWEEP_EVERY_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), SWEEP_EVERY_S)


async def expire_tags_forever(engine: AsyncEngine, shutdown: asyncio.Event) -> None:
    """Clear expired delivery retry tags now, then every TAG_EXPIRY_EVERY_S."""
    while not shutdown.is_set():
        try:
            cleared = await expire_delivery_tags(engine)
            if cleared:
                log.debug("cleared %d expired delivery retry tag(s)", cleared)
        except (CryptmailError, OSError) as exc:
            log.warning("clearing delivery retry tags failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), TAG_EXPIRY_EVERY_S)


async def _run(
    config: Config, engine: AsyncEngine, *, lmtp: str, imap: str, imaps: str, web: str
) -> int:
    spool_dir = config.data_path / "spool"
    # Off the loop: building an S3 client imports boto3 and reads its data files (~0.3 s).
    blobs = await run_blocking(open_blob_store, config)
    bus = ChangeBus()
    throttle = LoginThrottle()
    accounts = UnlockedAccounts(engine, config.crypto)
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)

    workers: LmtpWorkers | None = None
    tasks: list[asyncio.Task[None]] = []
    housekeeping = [
        asyncio.create_task(sweep_forever(engine, blobs, spool_dir, shutdown)),
        asyncio.create_task(expire_tags_forever(engine, shutdown)),
    ]
    try:
        if lmtp:
            processes = config.lmtp.process_count
            sock = await run_blocking(bind_listener, lmtp, wait_s=BIND_WAIT_S)
            setup = WorkerSetup(config, LOG_FORMAT, logger_levels(), GRACE_S)
            workers = LmtpWorkers(setup, sock, ConnectionShares.create(processes), bus)
            workers.start()
            housekeeping.append(asyncio.create_task(workers.watch(shutdown)))
            log.info("LMTP listening on %s (%d worker processes)", lmtp, processes)
        for address, tls in ((imap, False), (imaps, True)):
            if not address:
                continue
            serve_imap = _optional("cryptmail.imap", "serve_imap")
            if serve_imap is None:
                log.warning("IMAP is not built in this version; not listening on %s", address)
                continue
            host, port = _host_port(address)
            tasks.append(
                asyncio.create_task(
                    serve_imap(
                        config,
                        host,
                        port,
                        engine=engine,
                        blobs=blobs,
                        bus=bus,
                        throttle=throttle,
                        shutdown_event=shutdown,
                        tls=tls,
                        accounts=accounts,
                    )
                )
            )
        if web:
            serve_web = _optional("cryptmail.web", "serve_web")
            if serve_web is None:
                log.warning("the web pages are not built in this version; not listening")
            else:
                host, port = _host_port(web)
                tasks.append(
                    asyncio.create_task(
                        serve_web(
                            config,
                            host,
                            port,
                            engine=engine,
                            throttle=throttle,
                            shutdown_event=shutdown,
                            accounts=accounts,
                        )
                    )
                )
        if workers is None and not tasks:
            raise ConfigError("no listener to run: give --lmtp, --imap, --imaps or --web")
        settle_gc()
        tune_malloc()
        log.info("cryptmail serving; SIGTERM stops gracefully")
        waiter = asyncio.create_task(shutdown.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        shutdown.set()
        for task in done:
            if task is not waiter and task.exception() is not None:
                log.error("a listener stopped: %s", task.exception())
    finally:
        shutdown.set()
        if workers is not None:
            await workers.stop(GRACE_S)
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, GRACE_S)
        for task in housekeeping:
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("cryptmail stopped")
    return 0

"""The server's chores: the start-up cleanup, the crash-leftover sweep and the retry-tag
expiry.

Before any listener starts, `clean_at_start` removes what a killed server left, whatever
its age: files in `blobs/tmp` whose writer is dead (zeroed first: a crypt 0 user's
plaintext) and spools of dead processes. Then, at start and hourly, a sweep removes
spools left by a crash (their key died with the process), blob temp files older than an
hour, and orphan blobs (no row names them: a crash between blob and row) older than a
day, long past any delivery, APPEND or import still in flight. Every half minute, local
blobs deleted at least that long ago are zeroed and removed (not at once: a read may
still be on them). Every five minutes, delivery retry tags older than their hour are
cleared, and so are expired Sieve records and URLAUTH grants. A failed pass is logged and tried
again at the next interval: housekeeping is never fatal to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptmailError
from cryptmail.sieve import expire_records
from cryptmail.store import expire_delivery_tags, prune_urls, sweep_orphans, sweep_spools
from cryptmail.store.blobs import DELETE_GRACE_S, BlobStore, LocalBlobStore

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600.0
TAG_EXPIRY_EVERY_S = 300.0
"""How often delivery retry tags older than their hour are cleared."""
TEMP_GRACE_S = 3600.0
ORPHAN_GRACE_S = 86400.0


async def clean_at_start(blobs: BlobStore, spool_dir: Path) -> None:
    """Remove what a killed server left. Call it before the listeners start.

    Safe then: this server has no delivery, APPEND or delete in flight yet, so a file
    with its own pid is an earlier process's (the pid came round again). With the local
    backend only one `serve` uses a data dir; another process on it (an import, a
    `store` command) still runs, and its files, named with its pid, are kept. An S3
    bucket may be shared by other nodes whose uploads cannot be told apart: there the
    hourly sweep's age rule stays the only one.
    """
    try:
        spools = await run_blocking(sweep_spools, spool_dir)
        temps = None
        if isinstance(blobs, LocalBlobStore):
            temps = await blobs.sweep_dead_writers(spare_own=False)
    except OSError as exc:  # the hourly sweep tries again; never fatal to the server
        log.warning("start-up cleanup failed (%s)", type(exc).__name__)
        return
    if spools or (temps and temps.count):
        log.info(
            "start-up cleanup removed %d spool(s) and %d blob temp file(s) (%d bytes) "
            "left by a stopped server",
            spools,
            temps.count if temps else 0,
            temps.bytes if temps else 0,
        )


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
    """Sweep now, then every SWEEP_EVERY_S, until `shutdown` is set."""
    while not shutdown.is_set():
        try:
            await sweep_once(engine, blobs, spool_dir)
        except (CryptmailError, OSError) as exc:
            log.warning("sweep failed (%s); retrying in %d s", type(exc).__name__, SWEEP_EVERY_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), SWEEP_EVERY_S)


async def zero_deleted_forever(blobs: BlobStore, shutdown: asyncio.Event) -> None:
    """Zero and remove deleted local blobs once their grace is over, every
    DELETE_GRACE_S; nothing to do for S3, whose deletes are final at once."""
    if not isinstance(blobs, LocalBlobStore):
        return
    while not shutdown.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), DELETE_GRACE_S)
        try:
            await blobs.sweep_deleted(DELETE_GRACE_S)
        except OSError as exc:
            log.warning("zeroing deleted blobs failed (%s)", type(exc).__name__)


async def expire_tags_forever(engine: AsyncEngine, shutdown: asyncio.Event) -> None:
    """Clear expired delivery retry tags now, then every TAG_EXPIRY_EVERY_S."""
    while not shutdown.is_set():
        try:
            cleared = await expire_delivery_tags(engine)
            if cleared:
                log.debug("cleared %d expired delivery retry tag(s)", cleared)
        except (CryptmailError, OSError) as exc:
            log.warning("clearing delivery retry tags failed (%s)", type(exc).__name__)
        try:
            expired = await expire_records(engine)
            if expired:
                log.debug("deleted %d expired sieve record(s)", expired)
        except Exception as exc:  # housekeeping goes on; the log says what failed
            log.warning("deleting expired sieve records failed (%s)", type(exc).__name__)
        try:
            pruned = await prune_urls(engine)
            if pruned:
                log.debug("deleted %d expired URLAUTH grant(s)", pruned)
        except Exception as exc:  # housekeeping goes on; the log says what failed
            log.warning("deleting expired URLAUTH grants failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), TAG_EXPIRY_EVERY_S)

"""`store check`: the integrity sweep that needs no password.

Every row has its blob, every blob's header parses, and blobs no row names (orphans of
a crash between blob and row) are listed, and removed with `fix` once older than the
grace period (a delivery in flight has a blob without a row for a moment). An orphan
within the grace period is no problem: it may be a delivery in flight, and if it is a
crash's, a later sweep takes it. The local backend's `blobs/tmp` is counted too (writes
in flight and what killed writers left); `fix` removes the files of dead writers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import MAX_HEADER_SIZE, parse_blob_header
from cryptmail.db import tables as t
from cryptmail.errors import BlobMissing, MalformedObject
from cryptmail.store._ids import BlobId, MessageId
from cryptmail.store.blobs import DELETE_GRACE_S, BlobStore, LocalBlobStore, TempFiles


@dataclass
class CheckReport:
    rows: int = 0
    blobs: int = 0
    missing: list[tuple[MessageId, BlobId]] = field(default_factory=list)
    malformed: list[BlobId] = field(default_factory=list)
    orphans: list[BlobId] = field(default_factory=list)
    removed: list[BlobId] = field(default_factory=list)
    young_orphans: list[BlobId] = field(default_factory=list)
    """Orphans younger than the grace period: kept, and no problem."""
    orphans_go_after: float | None = None
    """When the youngest orphan leaves its grace period (Unix time); None if none is young."""
    temp: TempFiles | None = None
    """What `blobs/tmp` holds (None for a backend without one)."""
    temp_removed: TempFiles = TempFiles()

    @property
    def kept_orphans(self) -> list[BlobId]:
        removed = set(self.removed)
        return [b for b in self.orphans if b not in removed]

    @property
    def clean(self) -> bool:
        """Nothing missing or malformed, and every orphan past its grace period removed."""
        young = set(self.young_orphans)
        overdue = [b for b in self.kept_orphans if b not in young]
        return not (self.missing or self.malformed or overdue)


async def _referenced(engine: AsyncEngine) -> tuple[dict[bytes, MessageId], int]:
    """Every blob id a row names, with one such row id; and the number of rows."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.cm_messages.c.id, t.cm_messages.c.blob_id))).all()
        staged = (await conn.execute(select(t.cm_staged_blobs.c.blob_id))).scalars().all()
    referenced: dict[bytes, MessageId] = {}
    for row in rows:
        referenced.setdefault(bytes(row.blob_id), MessageId(int(row.id)))
    for blob_id in staged:
        # Sealed for a staged import, placed at the user's next login (no row yet).
        referenced.setdefault(bytes(blob_id), MessageId(0))
    return referenced, len(rows)


async def _remove_orphans(
    engine: AsyncEngine, blobs: BlobStore, orphans: list[BlobId], grace_s: float
) -> list[BlobId]:
    removed: list[BlobId] = []
    now = time.time()
    async with engine.connect() as conn:
        for blob_id in orphans:
            # Re-check under the current state: a row may have committed meanwhile.
            still = (
                await conn.execute(
                    select(t.cm_messages.c.id).where(t.cm_messages.c.blob_id == blob_id).limit(1)
                )
            ).first()
            staged = (
                await conn.execute(
                    select(t.cm_staged_blobs.c.staged_id)
                    .where(t.cm_staged_blobs.c.blob_id == blob_id)
                    .limit(1)
                )
            ).first()
            if still is not None or staged is not None:
                continue
            try:
                if now - await blobs.modified_at(blob_id) < grace_s:
                    continue
            except BlobMissing:
                continue
            await blobs.delete(blob_id)
            removed.append(blob_id)
    return removed


async def check_store(
    engine: AsyncEngine, blobs: BlobStore, *, fix: bool = False, grace_s: float = 600.0
) -> CheckReport:
    report = CheckReport()
    referenced, report.rows = await _referenced(engine)
    present: set[bytes] = set()
    async for blob_id in blobs.list_ids():
        present.add(blob_id)
        report.blobs += 1
        if blob_id not in referenced:
            # No row names it, so it holds nobody's mail, whatever its header says (a
            # crash can leave a half-written one); it is removed as an orphan.
            report.orphans.append(blob_id)
            continue
        try:
            parse_blob_header(await blobs.read(blob_id, 0, MAX_HEADER_SIZE))
        except (MalformedObject, BlobMissing):
            report.malformed.append(blob_id)
    for raw_id, row_id in referenced.items():
        if raw_id not in present:
            report.missing.append((row_id, BlobId(raw_id)))
    await _sort_young(blobs, report, grace_s)
    if fix and report.orphans:
        report.removed = await _remove_orphans(engine, blobs, report.orphans, grace_s)
    if isinstance(blobs, LocalBlobStore):
        report.temp = await blobs.temp_usage()
        if fix and report.temp.count:
            dead = await blobs.sweep_dead_writers()
            deleted = await blobs.sweep_deleted(min(grace_s, DELETE_GRACE_S))
            report.temp_removed = TempFiles(dead.count + deleted.count, dead.bytes + deleted.bytes)
    return report


async def _sort_young(blobs: BlobStore, report: CheckReport, grace_s: float) -> None:
    """Note the orphans within the grace period, and when the last of them leaves it."""
    now = time.time()
    latest: float | None = None
    for blob_id in list(report.orphans):
        try:
            modified = await blobs.modified_at(blob_id)
        except BlobMissing:  # removed meanwhile (a sweep, or a delete that committed)
            report.orphans.remove(blob_id)
            continue
        if now - modified < grace_s:
            report.young_orphans.append(blob_id)
            latest = modified if latest is None else max(latest, modified)
    report.orphans_go_after = None if latest is None else latest + grace_s


async def sweep_orphans(
    engine: AsyncEngine, blobs: BlobStore, *, grace_s: float = 86400.0
) -> list[BlobId]:
    """Remove blobs no row names that are older than `grace_s` (what `check --fix` does
    to orphans, without reading every header); returns the ids removed. The serve loop
    runs it periodically."""
    referenced, _ = await _referenced(engine)
    orphans = [b async for b in blobs.list_ids() if b not in referenced]
    if not orphans:
        return []
    return await _remove_orphans(engine, blobs, orphans, grace_s)

"""One user's search index in this process: the segments loaded from the database,
brought up to date before each use, and the work of adding to and merging them.

Several sessions of the user share one `UserIndex` (the registry above this layer
hands it out); sessions in other processes or on other nodes write their own segments
to the same rows, which `refresh` picks up. Two sessions indexing the same message at
once only store it twice (a merge keeps one), and a merge that lost a race rolls back
(`SegmentsChanged`), so nothing is lost either way.

A segment that does not open (changed, truncated, another version) is deleted and its
messages are indexed again; until then they are searched the slow way, never answered
from a segment that could be wrong.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptoError, DatabaseConflict
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId
from cryptmail.store.fulltext._query import Needle, match_segment
from cryptmail.store.fulltext._rows import (
    delete_segment,
    insert_segment,
    list_segments,
    load_segments,
    replace_segments,
)
from cryptmail.store.fulltext._sealing import open_segment, seal_segment
from cryptmail.store.fulltext._segment import Segment, build_segment, merge_segments

log = logging.getLogger(__name__)

MAX_SEGMENTS: Final = 8
"""More segments than this and the smaller ones are merged."""
MERGE_DOCS: Final = 10000
"""A merge stops adding segments once the result would hold more docs than this (a
sealed segment of 10,000 mails of a few KB is about 2 MB: well within a MEDIUMBLOB and
MariaDB's default max_allowed_packet)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the index says about one search string: `indexed` blobs it knows, of those
    the `candidates` that may match and the `proven` ones that do (a subset)."""

    indexed: frozenset[BlobId]
    candidates: frozenset[BlobId]
    proven: frozenset[BlobId]

    def verdict(self, blob_id: BlobId) -> bool | None:
        """True: matches; False: cannot match; None: read the message to know."""
        if blob_id not in self.indexed:
            return None
        if blob_id in self.proven:
            return True
        if blob_id not in self.candidates:
            return False
        return None


def _lookup(segments: list[Segment], needle: Needle) -> Lookup:
    import numpy as np  # where it runs: an idle server never searches (7 MB)

    indexed: set[BlobId] = set()
    candidates: set[BlobId] = set()
    proven: set[BlobId] = set()
    for segment in segments:
        maybe, sure = match_segment(segment, needle)
        docs = segment.docs
        indexed.update(docs)
        candidates.update(docs[i] for i in np.flatnonzero(maybe).tolist())
        proven.update(docs[i] for i in np.flatnonzero(sure).tolist())
    return Lookup(frozenset(indexed), frozenset(candidates), frozenset(proven))


class UserIndex:
    """See the module docstring."""

    def __init__(self, engine: AsyncEngine, account: UnlockedAccount) -> None:
        self._engine = engine
        self.account = account
        self._segments: dict[int, Segment] = {}
        self._stripped: set[int] = set()  # segments held as their doc lists only
        self._lock = asyncio.Lock()
        self.indexed: frozenset[BlobId] = frozenset()

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def _recount(self) -> None:
        self.indexed = frozenset(b for s in self._segments.values() for b in s.docs)

    @property
    def loaded(self) -> bool:
        """Whether the words are in memory (else only which blobs are indexed)."""
        return not self._stripped

    def unload(self) -> None:
        """Keep only the doc lists (what the background pass needs to know what is
        indexed); the words are read again at the next look-up or merge."""
        for segment_id, segment in self._segments.items():
            if segment_id not in self._stripped:
                self._segments[segment_id] = Segment(segment.docs, {})
                self._stripped.add(segment_id)

    async def _load_stripped(self) -> None:
        if not self._stripped:
            return
        wanted = sorted(self._stripped)
        self._stripped.clear()
        for segment_id in wanted:
            del self._segments[segment_id]
        await self._add_rows(wanted)
        self._recount()

    async def refresh(self) -> None:
        """Load segments written since (by any session, anywhere); forget removed ones."""
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        user_id = self.account.user.id
        current = set(await list_segments(self._engine, user_id))
        new = sorted(current - set(self._segments))
        changed = bool(set(self._segments) - current)
        for gone in set(self._segments) - current:
            del self._segments[gone]
            self._stripped.discard(gone)
        if new:
            await self._add_rows(new)
            changed = True
        if changed:
            self._recount()

    async def _add_rows(self, ids: list[int]) -> None:
        user_id = self.account.user.id
        rows = await load_segments(self._engine, user_id, ids)
        opened = await run_blocking(self._open_all, rows)
        for segment_id, segment in opened.items():
            if segment is None:
                log.warning(
                    "search index segment %d of user id %d does not open; dropped, its "
                    "messages will be indexed again",
                    segment_id,
                    user_id,
                )
                await delete_segment(self._engine, user_id, segment_id)
            else:
                self._segments[segment_id] = segment

    def _open_all(self, rows: Mapping[int, tuple[bytes, bytes]]) -> dict[int, Segment | None]:
        out: dict[int, Segment | None] = {}
        for segment_id, (name, sealed) in rows.items():
            try:
                out[segment_id] = open_segment(self.account, name, sealed)
            except CryptoError:
                out[segment_id] = None
        return out

    async def lookup(self, needle: Needle) -> Lookup:
        async with self._lock:
            await self._load_stripped()
            segments = list(self._segments.values())
        return await run_blocking(_lookup, segments, needle)

    async def add(self, docs: Iterable[tuple[BlobId, Mapping[int, Iterable[str]]]]) -> None:
        """Store a new segment of `docs` (blob id, {field: words})."""
        docs = list(docs)
        if not docs:
            return
        name = os.urandom(16)
        segment, sealed = await run_blocking(self._build, name, docs)
        async with self._lock:
            segment_id = await insert_segment(self._engine, self.account.user.id, name, sealed)
            self._segments[segment_id] = segment
            self._recount()

    def _build(
        self, name: bytes, docs: list[tuple[BlobId, Mapping[int, Iterable[str]]]]
    ) -> tuple[Segment, bytes]:
        segment = build_segment(docs)
        return segment, seal_segment(self.account, name, segment)

    async def compact(self, alive: set[BlobId], *, above: int = MAX_SEGMENTS) -> bool:
        """Merge the smaller segments when there are more than `above`, dropping docs
        whose blob is no longer in `alive`; True when something was merged."""
        async with self._lock:
            await self._refresh()
            if len(self._segments) <= above:
                return False
            await self._load_stripped()
            by_size = sorted(self._segments.items(), key=lambda item: item[1].size)
            chosen: list[tuple[int, Segment]] = []
            total = 0
            for segment_id, segment in by_size:
                if len(chosen) >= 2 and total + segment.size > MERGE_DOCS:
                    break
                chosen.append((segment_id, segment))
                total += segment.size
            name = os.urandom(16)
            merged, sealed = await run_blocking(self._merge, name, [s for _i, s in chosen], alive)
            old = [segment_id for segment_id, _s in chosen]
            try:
                new_id = await replace_segments(
                    self._engine, self.account.user.id, old, name, sealed
                )
            except DatabaseConflict:
                return False
            for segment_id in old:
                del self._segments[segment_id]
            self._segments[new_id] = merged
            self._recount()
            return True

    def _merge(
        self, name: bytes, segments: list[Segment], alive: set[BlobId]
    ) -> tuple[Segment, bytes]:
        merged = merge_segments(segments, alive)
        return merged, seal_segment(self.account, name, merged)

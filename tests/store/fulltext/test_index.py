"""UserIndex on a real SQLite database: segments written by one session are seen by
another, merges drop expunged blobs and lose no update, a damaged segment is dropped
(its messages go back to the slow path), and the rows hold no word in clear."""

from __future__ import annotations

import os
import random

import pytest
from sqlalchemy import select, update

from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import BlobId
from cryptmail.store.fulltext import (
    BODY,
    MAX_SEGMENTS,
    Needle,
    NeedleTerm,
    SegmentsChanged,
    UserIndex,
    needle_terms,
)
from cryptmail.store.fulltext._index import MERGE_DOCS
from cryptmail.store.fulltext._rows import list_segments, replace_segments

from ..conftest import PASSWORD, StoreRig

MARKER = "zqxmarkerword"


async def _account(rig: StoreRig) -> UnlockedAccount:
    user = await rig.user("alice@example.org")
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


def _needle(text: str) -> Needle:
    terms, whole = needle_terms(text)
    return Needle("body", terms, whole)


def _blob() -> BlobId:
    return BlobId(os.urandom(16))


async def test_a_second_session_sees_the_first_ones_segments(rig: StoreRig) -> None:
    account = await _account(rig)
    a, b = _blob(), _blob()
    first = UserIndex(rig.engine, account)
    await first.add([(a, {BODY: {MARKER, "common"}}), (b, {BODY: {"common"}})])
    second = UserIndex(rig.engine, account)
    await second.refresh()
    assert second.indexed == {a, b}
    found = await second.lookup(_needle(MARKER[2:8]))
    assert found.verdict(a) is True and found.verdict(b) is False
    assert found.verdict(_blob()) is None  # not indexed: read it


async def test_compact_merges_and_drops_expunged_blobs(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    blobs = [_blob() for _ in range(MAX_SEGMENTS + 2)]
    for blob in blobs:
        await index.add([(blob, {BODY: {"w" + blob.hex()[:6]}})])
    alive = set(blobs[1:])
    assert await index.compact(alive)
    assert index.segment_count < MAX_SEGMENTS + 2
    assert index.indexed == alive
    other = UserIndex(rig.engine, account)
    await other.refresh()
    assert other.indexed == alive
    found = await other.lookup(_needle("w" + blobs[3].hex()[:6]))
    assert found.proven == {blobs[3]}


async def test_a_merge_that_lost_the_race_writes_nothing(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    await index.add([(_blob(), {BODY: {"x"}})])
    await index.add([(_blob(), {BODY: {"y"}})])
    ids = await list_segments(rig.engine, account.user.id)
    await replace_segments(rig.engine, account.user.id, ids, os.urandom(16), b"merged")
    with pytest.raises(SegmentsChanged):
        await replace_segments(rig.engine, account.user.id, ids, os.urandom(16), b"again")
    assert len(await list_segments(rig.engine, account.user.id)) == 1


async def test_a_damaged_segment_is_dropped_never_used(rig: StoreRig) -> None:
    account = await _account(rig)
    writer = UserIndex(rig.engine, account)
    a = _blob()
    await writer.add([(a, {BODY: {MARKER}})])
    async with rig.engine.begin() as conn:
        sealed = (await conn.execute(select(t.cm_fts_segments.c.sealed))).scalar_one()
        damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
        await conn.execute(update(t.cm_fts_segments).values(sealed=damaged))
    reader = UserIndex(rig.engine, account)
    await reader.refresh()
    assert reader.indexed == frozenset()
    assert (await reader.lookup(_needle(MARKER))).verdict(a) is None
    assert await list_segments(rig.engine, account.user.id) == []


async def test_rows_hold_no_word_in_clear(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    await index.add([(_blob(), {BODY: {MARKER}, 4: {MARKER + "subj"}})])
    async with rig.engine.connect() as conn:
        rows = (await conn.execute(select(t.cm_fts_segments))).all()
    dump = b"".join(bytes(v) if isinstance(v, bytes) else str(v).encode() for r in rows for v in r)
    assert MARKER.encode() not in dump
    assert (len(rows[0].sealed) - 33) % 4096 == 0  # padded plain + head, nonce and tag


async def test_constraints_with_anchors(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    a, b = _blob(), _blob()
    await index.add([(a, {BODY: {"hello", "world"}}), (b, {BODY: {"yellow", "worldly"}})])
    found = await index.lookup(Needle("body", (NeedleTerm("ello", False, True),), False))
    assert found.candidates == {a} and found.proven == frozenset()
    found = await index.lookup(_needle("ello wor"))
    assert found.candidates == {a}
    found = await index.lookup(_needle("llow"))
    assert found.proven == {b}


async def test_a_full_size_merged_segment_is_stored_and_read_back(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    rng = random.Random(5)
    vocabulary = [f"w{n:05d}" for n in range(30000)]
    blobs = [_blob() for _ in range(MERGE_DOCS)]
    docs = [(blob, {BODY: set(rng.sample(vocabulary, 150))}) for blob in blobs]
    await index.add(docs)  # one segment as large as a merge makes them
    reader = UserIndex(rig.engine, account)
    await reader.refresh()
    assert reader.indexed == set(blobs)
    word = next(iter(docs[7][1][BODY]))
    found = await reader.lookup(_needle(word))
    assert found.proven == {blob for blob, fields in docs if word in fields[BODY]}


async def test_an_unloaded_index_keeps_its_doc_list_and_reads_words_again(rig: StoreRig) -> None:
    account = await _account(rig)
    index = UserIndex(rig.engine, account)
    a, b = _blob(), _blob()
    await index.add([(a, {BODY: {MARKER}}), (b, {BODY: {"other"}})])
    index.unload()
    assert not index.loaded and index.indexed == {a, b}
    found = await index.lookup(_needle(MARKER))
    assert index.loaded and found.proven == {a} and found.verdict(b) is False

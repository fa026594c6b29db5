"""Segments: build, merge, encode and decode, and what decoding must refuse."""

from __future__ import annotations

import os

import pytest

from cryptmail.errors import MalformedObject
from cryptmail.store import BlobId
from cryptmail.store.fulltext import (
    BODY,
    Segment,
    build_segment,
    decode_segment,
    encode_segment,
    merge_segments,
)


def _blob() -> BlobId:
    return BlobId(os.urandom(16))


def _as_dict(segment: Segment) -> dict[int, dict[str, set[BlobId]]]:
    out: dict[int, dict[str, set[BlobId]]] = {}
    for field_id, fw in segment.fields.items():
        for i, word in enumerate(fw.words):
            docs = fw.postings[fw.offsets[i] : fw.offsets[i + 1]].tolist()
            out.setdefault(field_id, {})[word] = {segment.docs[d] for d in docs}
    return out


def test_round_trip() -> None:
    a, b = _blob(), _blob()
    segment = build_segment([(a, {BODY: ["x", "yé"], 4: ["s"]}), (b, {BODY: ["x"]})])
    again = decode_segment(encode_segment(segment))
    assert again.docs == [a, b]
    assert _as_dict(again) == {BODY: {"x": {a, b}, "yé": {a}}, 4: {"s": {a}}}


def test_merge_unites_dedupes_and_drops_dead_docs() -> None:
    a, b, c = _blob(), _blob(), _blob()
    one = build_segment([(a, {BODY: ["x"]}), (b, {BODY: ["y"]})])
    two = build_segment([(b, {BODY: ["y"]}), (c, {BODY: ["x", "z"]})])
    merged = merge_segments([one, two], keep={a, b, c})
    assert sorted(merged.docs) == sorted([a, b, c])
    assert _as_dict(merged) == {BODY: {"x": {a, c}, "y": {b}, "z": {c}}}
    pruned = merge_segments([one, two], keep={b})
    assert pruned.docs == [b]
    assert _as_dict(pruned) == {BODY: {"y": {b}}}


def test_empty_segment_round_trips() -> None:
    assert decode_segment(encode_segment(build_segment([]))).docs == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],
        lambda data: data + b"\x00",
        lambda data: b"XXXX" + data[4:],
        lambda data: data[:4] + b"\x02" + data[5:],
        lambda data: data[:-4] + b"\xff\xff\x00\x00",  # a posting beyond the docs
    ],
)
def test_decode_refuses_damage(damage: object) -> None:
    data = encode_segment(build_segment([(_blob(), {BODY: ["word"]})]))
    with pytest.raises(MalformedObject):
        decode_segment(damage(data))  # type: ignore[operator]

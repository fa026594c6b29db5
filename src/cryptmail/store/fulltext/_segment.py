"""One immutable segment of the index: documents (message blobs) and, per field, the
sorted words with the documents that hold each.

Plain layout (before compression and sealing; docs/security.md, "Search index"):

    segment  = "CMFT" || u8(1) || u32(n_docs) || doc_id * n_docs || u8(n_fields) || field*
    field    = u8(field_id) || u32(n_terms) || u32(len(words)) || words
               || u32le(offset) * (n_terms + 1) || u32le(doc_number) * offset[n_terms]
    words    = the words, UTF-8, joined by "\\n" (a word never holds one), sorted

A document is a 16-byte blob id: a message's text never changes under its blob id, a
COPY shares it, and blob ids are random and never reused, so an entry can only go
stale (its blob expunged), never wrong. Doc numbers index the doc list; postings of a
word are ascending. Integers are big-endian except the two arrays (little-endian u32,
read in place by numpy).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from cryptmail.errors import MalformedObject
from cryptmail.store._ids import BlobId

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    # numpy is imported where it runs: an idle server never searches (7 MB).
    U32 = npt.NDArray[np.uint32]

MAGIC: Final = b"CMFT"
VERSION: Final = 1
DOC_ID_SIZE: Final = 16

Docs = Iterable[tuple[BlobId, Mapping[int, Iterable[str]]]]


@dataclass(eq=False)
class FieldWords:
    """The words of one field: `words[i]` is held by docs `postings[offsets[i]:offsets[i+1]]`."""

    words: list[str]
    offsets: U32
    postings: U32
    _lookup: dict[str, int] | None = field(default=None, repr=False)
    _joined: str | None = field(default=None, repr=False)
    _starts: npt.NDArray[np.int64] | None = field(default=None, repr=False)

    def index_of(self, word: str) -> int | None:
        if self._lookup is None:
            self._lookup = {w: i for i, w in enumerate(self.words)}
        return self._lookup.get(word)

    def find(self, piece: str, limit: int) -> list[int] | None:
        """Indexes of the words containing `piece` (ending with it, when `piece` ends
        in "\n"), found in one joined string at C speed; None beyond `limit` words."""
        import numpy as np

        if self._joined is None or self._starts is None:
            self._joined = "\n".join(self.words) + "\n"
            lengths = np.fromiter((len(w) + 1 for w in self.words), np.int64, len(self.words))
            self._starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        joined, starts = self._joined, self._starts
        found: list[int] = []
        position = joined.find(piece)
        while position >= 0:
            index = int(np.searchsorted(starts, position, side="right")) - 1
            found.append(index)
            if len(found) > limit:
                return None
            # Go on from the next word: one hit per word.
            following = index + 1
            position = joined.find(piece, int(starts[following])) if following < len(starts) else -1
        return found

    def docs_of(self, indexes: Iterable[int]) -> U32:
        """The doc numbers holding any of the words at `indexes` (may repeat)."""
        import numpy as np

        parts = [self.postings[self.offsets[i] : self.offsets[i + 1]] for i in indexes]
        if not parts:
            return np.zeros(0, dtype=np.uint32)
        return np.concatenate(parts)


@dataclass(eq=False)
class Segment:
    """Decoded segment; `docs[n]` is the blob id of doc number n."""

    docs: list[BlobId]
    fields: dict[int, FieldWords]

    @property
    def size(self) -> int:
        return len(self.docs)


def build_segment(docs: Docs) -> Segment:
    """A segment of `docs` (blob id, {field: words}); a blob given twice is kept once."""
    import numpy as np

    blob_ids: list[BlobId] = []
    seen: set[BlobId] = set()
    per_field: dict[int, dict[str, list[int]]] = {}
    for blob_id, fields in docs:
        if blob_id in seen:
            continue
        seen.add(blob_id)
        number = len(blob_ids)
        blob_ids.append(blob_id)
        for field_id, words in fields.items():
            table = per_field.setdefault(field_id, {})
            for word in words:
                table.setdefault(word, []).append(number)
    out: dict[int, FieldWords] = {}
    for field_id, table in per_field.items():
        words = sorted(table)
        lists = [table[w] for w in words]
        offsets = np.zeros(len(words) + 1, dtype=np.uint32)
        np.cumsum([len(x) for x in lists], out=offsets[1:])
        flat = np.fromiter((d for x in lists for d in x), dtype=np.uint32, count=int(offsets[-1]))
        out[field_id] = FieldWords(words, offsets, flat)
    return Segment(blob_ids, out)


def merge_segments(segments: Iterable[Segment], keep: set[BlobId] | None) -> Segment:
    """One segment holding the docs of all `segments` (those in `keep` only, when given).

    Vectorised: every (word, doc) pair becomes one integer word * n_docs + doc, and one
    sort-unique of those gives the merged postings in order."""
    import numpy as np

    segments = list(segments)
    blob_ids: list[BlobId] = []
    numbers: dict[BlobId, int] = {}
    remaps: list[npt.NDArray[np.int64]] = []
    for segment in segments:
        remap = np.full(len(segment.docs), -1, dtype=np.int64)
        for old, blob_id in enumerate(segment.docs):
            if keep is not None and blob_id not in keep:
                continue
            new = numbers.get(blob_id)
            if new is None:
                new = numbers[blob_id] = len(blob_ids)
                blob_ids.append(blob_id)
            remap[old] = new
        remaps.append(remap)
    n_docs = max(len(blob_ids), 1)
    out: dict[int, FieldWords] = {}
    for field_id in sorted({f for s in segments for f in s.fields}):
        parts = [(s.fields[field_id], remap) for s, remap in zip(segments, remaps, strict=True)
                 if field_id in s.fields]  # fmt: skip
        vocabulary = sorted({w for fw, _remap in parts for w in fw.words})
        position = {w: i for i, w in enumerate(vocabulary)}
        pairs = []
        for fw, remap in parts:
            global_index = np.fromiter((position[w] for w in fw.words), np.int64, len(fw.words))
            counts = np.diff(fw.offsets.astype(np.int64)).astype(np.int64)
            words = np.repeat(global_index, counts)
            docs = remap[fw.postings.astype(np.int64)]
            alive = docs >= 0
            pairs.append(words[alive] * n_docs + docs[alive])
        merged = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, dtype=np.int64)
        word_of = merged // n_docs
        used, counts = np.unique(word_of, return_counts=True)
        offsets = np.zeros(len(used) + 1, dtype=np.uint32)
        np.cumsum(counts, out=offsets[1:])
        out[field_id] = FieldWords(
            [vocabulary[i] for i in used.tolist()], offsets, (merged % n_docs).astype(np.uint32)
        )
    return Segment(blob_ids, out)


def encode_segment(segment: Segment) -> bytes:
    out = bytearray(MAGIC + bytes([VERSION]) + struct.pack(">I", len(segment.docs)))
    for blob_id in segment.docs:
        if len(blob_id) != DOC_ID_SIZE:
            raise ValueError("a segment's doc ids are 16-byte blob ids")
        out += blob_id
    out += bytes([len(segment.fields)])
    for field_id, fw in sorted(segment.fields.items()):
        words = "\n".join(fw.words).encode("utf-8", "surrogatepass")
        out += struct.pack(">BII", field_id, len(fw.words), len(words)) + words
        out += fw.offsets.astype("<u4").tobytes() + fw.postings.astype("<u4").tobytes()
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise MalformedObject("search index segment is truncated")
        piece = self.data[self.pos : self.pos + size]
        self.pos += size
        return piece

    def array(self, count: int) -> U32:
        import numpy as np

        return np.frombuffer(self.take(4 * count), dtype="<u4").astype(np.uint32)


def decode_segment(data: bytes) -> Segment:
    """The segment; MalformedObject for anything that is not one (wrong magic or
    version, truncated, offsets or doc numbers out of range, trailing bytes)."""
    import numpy as np

    reader = _Reader(data)
    if reader.take(4) != MAGIC or reader.take(1) != bytes([VERSION]):
        raise MalformedObject("not a search index segment of a known version")
    (n_docs,) = struct.unpack(">I", reader.take(4))
    raw = reader.take(DOC_ID_SIZE * n_docs)
    docs = [BlobId(raw[i : i + DOC_ID_SIZE]) for i in range(0, len(raw), DOC_ID_SIZE)]
    fields: dict[int, FieldWords] = {}
    for _ in range(reader.take(1)[0]):
        field_id, n_words, words_size = struct.unpack(">BII", reader.take(9))
        text = reader.take(words_size).decode("utf-8", "surrogatepass")
        words = text.split("\n") if n_words else []
        if len(words) != n_words or field_id in fields:
            raise MalformedObject("search index segment has a bad word list")
        offsets = reader.array(n_words + 1)
        if offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise MalformedObject("search index segment has bad offsets")
        postings = reader.array(int(offsets[-1]))
        if len(postings) and int(postings.max()) >= n_docs:
            raise MalformedObject("search index segment names a doc it does not hold")
        fields[field_id] = FieldWords(words, offsets, postings)
    if reader.pos != len(data):
        raise MalformedObject("search index segment has trailing bytes")
    return Segment(docs, fields)

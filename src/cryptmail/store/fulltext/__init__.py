"""cryptmail.store.fulltext: the encrypted full-text index that narrows SEARCH.

Per user, a few immutable segments (blob id -> words, per field), each compressed,
padded and sealed whole under the user's data key in one row of cm_fts_segments: the
database sees opaque rows of rounded sizes, never a word, a count or a posting list.
A session with the unlocked account loads them (`UserIndex`), adds a segment per batch
of newly indexed messages and merges small segments in the background. The index only
ever narrows: for a search string it names the indexed messages that cannot match
(skipped), those that surely match (a single-word string), and leaves the rest, and
every message not indexed yet, to the ordinary matcher.
"""

from cryptmail.store.fulltext._index import MAX_SEGMENTS, Lookup, UserIndex
from cryptmail.store.fulltext._lease import drop_lease, lease_token, take_lease
from cryptmail.store.fulltext._query import (
    BODY,
    BODY_ONLY,
    HEADER_FIELDS,
    TEXT_EXTRA,
    Needle,
    match_segment,
)
from cryptmail.store.fulltext._rows import (
    SegmentsChanged,
    UserMessages,
    user_blobs,
    user_messages,
)
from cryptmail.store.fulltext._sealing import open_segment, padded_size, seal_segment
from cryptmail.store.fulltext._segment import (
    Segment,
    build_segment,
    decode_segment,
    encode_segment,
    merge_segments,
)
from cryptmail.store.fulltext._tokens import NeedleTerm, TokenStream, needle_terms, tokens

__all__ = [
    "BODY",
    "BODY_ONLY",
    "HEADER_FIELDS",
    "MAX_SEGMENTS",
    "TEXT_EXTRA",
    "Lookup",
    "Needle",
    "NeedleTerm",
    "Segment",
    "SegmentsChanged",
    "TokenStream",
    "UserIndex",
    "UserMessages",
    "build_segment",
    "decode_segment",
    "drop_lease",
    "encode_segment",
    "lease_token",
    "match_segment",
    "merge_segments",
    "needle_terms",
    "open_segment",
    "padded_size",
    "seal_segment",
    "take_lease",
    "tokens",
    "user_blobs",
    "user_messages",
]

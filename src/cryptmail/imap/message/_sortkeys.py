"""Sort and thread keys of one message (RFC 5256, RFC 5957), as IMAP names them.

The implementation is `store.sortkeys` (below the protocols, so delivery makes the
same keys once per message for its sort entries); the sort field record is
`store/_sortfields.py`. This module only gathers the names SORT and THREAD use.
"""

from cryptmail.store import (
    SORT_FIELDS,
    encode_sort_fields,
    header_sort_fields,
)
from cryptmail.store.sortkeys import (
    SortKeys,
    SortMemo,
    base_subject,
    message_ids,
    sort_keys,
    unicode_casemap,
)

__all__ = [
    "SORT_FIELDS",
    "SortKeys",
    "SortMemo",
    "base_subject",
    "encode_sort_fields",
    "header_sort_fields",
    "message_ids",
    "sort_keys",
    "unicode_casemap",
]

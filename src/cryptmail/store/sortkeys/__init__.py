"""cryptmail.store.sortkeys: a message's SORT and THREAD keys, made from its header.

:func:`sort_keys` turns the sort field record (`store/_sortfields.py`) into
:class:`SortKeys` (base subject, first addresses and display names in the
i;unicode-casemap collation, sent date, message ids); :func:`encode_ready_keys` and
:func:`decode_ready_keys` carry them in a sort entry from delivery, and
:class:`ReadyBlock` holds many such entries decoded as far as a SORT asks. Pure (no I/O);
below the protocols, so delivery makes the keys once per message with the code IMAP
uses (`imap/message/_sortkeys.py` re-exports it).
"""

from cryptmail.store.sortkeys._base_subject import base_subject
from cryptmail.store.sortkeys._casemap import unicode_casemap
from cryptmail.store.sortkeys._keys import SortKeys, SortMemo, message_ids, sort_keys
from cryptmail.store.sortkeys._ready import ReadyBlock, decode_ready_keys, encode_ready_keys

__all__ = [
    "ReadyBlock",
    "SortKeys",
    "SortMemo",
    "base_subject",
    "decode_ready_keys",
    "encode_ready_keys",
    "message_ids",
    "sort_keys",
    "unicode_casemap",
]

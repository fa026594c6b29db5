"""A mailbox's sort keys with each criterion's order kept ready (the SORT hot path).

A warm SORT of 10,000 messages used to build a tuple per message, sort them and build
the answer, and the tuples' allocation set off the cyclic garbage collector over every
key in memory: 20 to 70 ms for work whose ordering alone takes about 3. Here the UIDs
are kept sorted per criterion (ascending key, then UID, which is mailbox order) in an
``array`` of 4-byte integers, built once on first use and updated in place as keys are
added (new mail: a binary search and one insert) or dropped (expunge). A SORT by one
criterion is then a filter of that array by the messages the search matched: no
per-message object is made.

REVERSE keeps equal keys in mailbox order (RFC 5256), so it walks the ascending order
backwards and turns each run of equal keys round.

Keys dropped by :meth:`SortIndex.pop` (an expunge one session has reported) are kept a
little longer, apart, because another session may not have learnt of the expunge yet
and still sorts the message; they are not in the orders, so such a SORT takes the
general path (:func:`sort_messages`).

The last few SORT and THREAD answers are kept too, each with a signature of the messages
and numbers it was made from (the same command in another session of the same view, as a
webmail's connection per page, is answered from it), all dropped whenever a key is added
or dropped.

Keys read from a sort key record come as a `SortBlock`, and those taken from
delivery's sort entries as a `store.sortkeys.ReadyBlock` (`add_block`, any
:class:`KeyBlock`); they stay there, undecoded, until something needs a message's
whole keys (THREAD, several criteria, an expunge): an order by one criterion reads the
one column it needs from each block, so the first SORT of a mailbox builds no
per-message object (10,000 key tuples, their strings and the garbage collector runs
they set off were most of its cost).

Pure: no I/O; the server keeps one per mailbox (``imap/server/_sortkeys.py``).
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Final, Protocol

from cryptmail.imap.message._sortkeys import SortKeys

__all__ = ["KeyBlock", "SortIndex", "block_value"]


class KeyBlock(Protocol):
    """Many messages' keys held undecoded, decoded as far as asked (a sort key record's
    `SortBlock`, delivery's `ReadyBlock`)."""

    uids: list[int]
    """Ascending, one entry each."""

    def column(self, field: str) -> list[object]:
        """One SortKeys field of every entry, in ``uids`` order ("sent": DATE's key)."""

    def keys(self) -> list[tuple[int, SortKeys]]:
        """(uid, whole keys) of every entry."""


def block_value(block: KeyBlock, field: str, uid: int) -> object:
    """One field of the entry of ``uid`` in ``block`` (KeyError if it holds none)."""
    index = bisect.bisect_left(block.uids, uid)
    if index == len(block.uids) or block.uids[index] != uid:
        raise KeyError(uid)
    return block.column(field)[index]


_INSERT_MAX_SHARE: Final = 16
"""Adding more than 1/16 of the mailbox at once drops an order (rebuilt on next use,
one C sort) instead of inserting key by key."""
_ANSWERS_KEPT: Final = 8
"""SORT and THREAD answers kept (the criteria a client or a few clients switch between)."""
_GONE_MIN: Final = 1024
"""Dropped keys kept for sessions that have not seen the expunge: at least this many,
or an eighth of the mailbox."""


_FIELD_NAMES: Final = {
    "ARRIVAL": "arrival", "CC": "cc", "FROM": "from_", "SIZE": "size", "SUBJECT": "subject",
    "TO": "to", "DISPLAYFROM": "display_from", "DISPLAYTO": "display_to", "DATE": "sent",
}  # fmt: skip
"""The :meth:`KeyBlock.column` each criterion reads."""
_FIELDS: Final = {
    name: SortKeys._fields.index(field)
    for name, field in (
        ("ARRIVAL", "arrival"), ("CC", "cc"), ("FROM", "from_"), ("SIZE", "size"),
        ("SUBJECT", "subject"), ("TO", "to"), ("DISPLAYFROM", "display_from"),
        ("DISPLAYTO", "display_to"),
    )
}  # fmt: skip
"""Criteria that read one field of the keys, and its position (DATE falls back)."""


class SortIndex:
    """Sort keys by UID, and orders per SORT criterion."""

    __slots__ = ("_answers", "_blocks", "_gone", "_keys", "_lazy", "_orders")

    def __init__(self) -> None:
        self._keys: dict[int, SortKeys] = {}
        self._lazy: dict[int, KeyBlock] = {}
        """UIDs whose keys are still in a block (never in ``_keys`` at the same time)."""
        self._blocks: list[KeyBlock] = []
        """The blocks some UID of ``_lazy`` points at."""
        self._gone: dict[int, SortKeys] = {}
        self._orders: dict[str, array[int]] = {}
        self._answers: OrderedDict[Hashable, tuple[bytes, bytes]] = OrderedDict()

    # -- the keys ---------------------------------------------------------------------

    def __contains__(self, uid: object) -> bool:
        return uid in self._keys or uid in self._lazy

    def __len__(self) -> int:
        return len(self._keys) + len(self._lazy)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain(self._keys, self._lazy)

    def pending(self) -> list[KeyBlock]:
        """The blocks some held UID's keys are still in: make their :meth:`KeyBlock.keys`
        in a worker thread and give them to :meth:`unpack` before asking :meth:`get` for
        many messages (else the first :meth:`get` of each does it where it is called)."""
        return list(self._blocks)

    def unpack(self, block: KeyBlock, made: list[tuple[int, SortKeys]] | None = None) -> None:
        """Move the keys of ``block`` (``made``: its :meth:`KeyBlock.keys`) that are
        still lazy into the table's keys (same values: the orders stay as they are)."""
        if block not in self._blocks:
            return  # unpacked meanwhile
        lazy, keys = self._lazy, self._keys
        for uid, found in block.keys() if made is None else made:
            if lazy.get(uid) is block:
                keys[uid] = found
                del lazy[uid]
        self._blocks.remove(block)

    def get(self, uid: int, default: SortKeys) -> SortKeys:
        """The keys of ``uid``, also when dropped lately (see the module docstring)."""
        found = self._keys.get(uid)
        if found is not None:
            return found
        block = self._lazy.get(uid)
        if block is not None:
            self.unpack(block)
            return self._keys[uid]
        return self._gone.get(uid, default)

    def missing(self, uids: dict[int, int]) -> list[int]:
        """The UIDs among ``uids``' keys that have no keys here, ascending."""
        return sorted(uids.keys() - self._keys.keys() - self._lazy.keys())

    def add(self, entries: Iterable[tuple[int, SortKeys]]) -> None:
        """(uid, keys) of messages, ``arrival`` set; a UID held already is left as it is."""
        added = [(uid, keys) for uid, keys in entries if uid not in self]
        if not added:
            return
        for uid, keys in added:
            self._keys[uid] = keys
        self._added([uid for uid, _keys in added])

    def add_block(self, block: KeyBlock) -> None:
        """The keys of a decoded sort key record chunk or of delivery's entries
        (``arrival`` set); a UID held already is left as it is. Nothing of it is
        decoded further until needed."""
        added = [uid for uid in block.uids if uid not in self]
        if not added:
            return
        self._lazy.update(dict.fromkeys(added, block))
        self._blocks.append(block)
        self._added(added)

    def _added(self, added: list[int]) -> None:
        self._answers.clear()
        for uid in added:
            self._gone.pop(uid, None)
        if len(added) * _INSERT_MAX_SHARE > len(self):
            self._orders.clear()
            return
        for name, order in self._orders.items():
            key = self._key(name)

            def full(uid: int, key: Callable[[int], Any] = key) -> tuple[Any, int]:
                return key(uid), uid

            for uid in added:
                bisect.insort(order, uid, key=full)

    def pop(self, uid: int, default: SortKeys | None = None) -> SortKeys | None:
        """Drop ``uid`` (expunged); its keys stay reachable by :meth:`get` a while."""
        block = self._lazy.get(uid)
        if block is not None:
            self.unpack(block)
        keys = self._keys.get(uid)
        if keys is None:
            return default
        self._answers.clear()
        for name, order in self._orders.items():
            key = self._key(name)
            index = bisect.bisect_left(order, (key(uid), uid), key=lambda u: (key(u), u))
            if index < len(order) and order[index] == uid:
                del order[index]
            else:  # not where it should be: the order is wrong, build it again
                self._orders.pop(name)
                break
        del self._keys[uid]
        self._gone[uid] = keys
        limit = max(_GONE_MIN, len(self._keys) // 8)
        while len(self._gone) > limit:
            del self._gone[next(iter(self._gone))]
        return keys

    # -- orders -----------------------------------------------------------------------

    def _key(self, name: str) -> Callable[[int], Any]:
        keys, lazy = self._keys, self._lazy
        column = _FIELD_NAMES[name]
        if name == "DATE":

            def sent(uid: int) -> Any:
                found = keys.get(uid)
                if found is None:
                    return block_value(lazy[uid], column, uid)
                return found.arrival if found.date is None else found.date

            return sent
        field = _FIELDS[name]

        def one(uid: int) -> Any:
            found = keys.get(uid)
            return block_value(lazy[uid], column, uid) if found is None else found[field]

        return one

    def _values(self, name: str) -> dict[int, Any]:
        """{uid: key} of every UID held by criterion ``name``, made column by column."""
        column = _FIELD_NAMES[name]
        values: dict[int, Any] = {}
        lazy = self._lazy
        for block in self._blocks:
            # A block's UIDs held in ``_keys`` instead get their value below.
            values.update(zip(block.uids, block.column(column), strict=True))
        if len(values) != len(lazy):
            values = {uid: values[uid] for uid in lazy}
        if name == "DATE":
            values.update(
                (uid, keys.arrival if keys.date is None else keys.date)
                for uid, keys in self._keys.items()
            )
        else:
            field = _FIELDS[name]
            values.update((uid, keys[field]) for uid, keys in self._keys.items())
        return values

    def order(self, name: str) -> array[int]:
        """Every UID held, ascending by criterion ``name`` (a SORT_CRITERIA name), equal
        keys by UID."""
        order = self._orders.get(name)
        if order is None:
            values = self._values(name)
            uids = sorted(values)
            uids.sort(key=values.__getitem__)  # stable: equal keys stay in UID order
            order = self._orders[name] = array("I", uids)
        return order

    def sorted_numbers(self, name: str, reverse: bool, wanted: dict[int, int]) -> list[int] | None:
        """The numbers ``wanted`` maps UIDs to, in the order of criterion ``name``; None
        when a wanted UID has no keys here (the caller sorts the general way)."""
        order = self.order(name)
        get = wanted.get
        if not reverse:
            numbers = [n for n in map(get, order) if n is not None]
        else:
            numbers = []
            for _key, run in itertools.groupby(reversed(order), self._key(name)):
                numbers += [n for n in map(get, run) if n is not None][::-1]
        return numbers if len(numbers) == len(wanted) else None

    # -- answers ----------------------------------------------------------------------

    def answer(self, command: Hashable, signature: bytes) -> bytes | None:
        """An answer kept by :meth:`keep_answer` for the same command and signature."""
        found = self._answers.get(command)
        if found is None or found[0] != signature:
            return None
        self._answers.move_to_end(command)
        return found[1]

    def keep_answer(self, command: Hashable, signature: bytes, answer: bytes) -> None:
        """Keep ``answer`` to ``command`` (what it asked, in a hashable form) over the
        messages and numbers ``signature`` stands for, until a key is added or dropped."""
        self._answers[command] = (signature, answer)
        self._answers.move_to_end(command)
        while len(self._answers) > _ANSWERS_KEPT:
            self._answers.popitem(last=False)

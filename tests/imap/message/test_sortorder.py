"""SortIndex: the orders it keeps up to date by insert and delete must always equal a
sort from scratch (`sort_messages`), for every criterion, REVERSE or not, whatever
the sequence of additions and expunges, with keys given whole or as sort key record
blocks (decoded lazily, unpacked when whole keys are asked); kept answers go with any
change."""

from __future__ import annotations

import random
import sys
import tracemalloc

import pytest

from cryptmail.imap.message._sort import SORT_CRITERIA, SortItem, sort_messages
from cryptmail.imap.message._sortkeys import SortKeys
from cryptmail.imap.message._sortorder import SortIndex
from cryptmail.imap.message._sortrecord import SortBlock, encode_sort_record


def _keys(rng: random.Random, uid: int) -> SortKeys:
    # Few distinct values, so equal keys (where the UID decides) are common.
    return SortKeys(
        date=None if rng.random() < 0.2 else float(rng.randrange(5)),
        subject=rng.choice(["", "APPLE", "BANANA", "É"]),
        reply=False,
        from_=rng.choice(["A", "B", ""]),
        to=rng.choice(["X", "Y"]),
        cc=rng.choice(["", "C"]),
        display_from=rng.choice(["D", "E"]),
        display_to=rng.choice(["F", "G"]),
        message_id=f"{uid}@x",
        references=(),
        size=rng.randrange(4),
        arrival=float(rng.randrange(6)),
    )


def _from_scratch(
    held: dict[int, SortKeys], wanted: dict[int, int], name: str, reverse: bool
) -> list[int]:
    items = [SortItem(number, uid, held[uid].arrival, held[uid]) for uid, number in wanted.items()]
    return [item.number for item in sort_messages(items, [(name, reverse)])]


def _block(batch: list[tuple[int, SortKeys]], extra: dict[int, SortKeys]) -> SortBlock:
    """``batch`` as a record chunk would give it (row id = 1000 + UID), with ``extra``
    (UIDs held already) in the payload too, and an entry whose row is gone."""
    entries = sorted([*batch, *extra.items()])
    payload = encode_sort_record(
        [(uid, 1000 + uid, keys) for uid, keys in entries] + [(10**6, 5, entries[0][1])]
    )
    wanted = {uid: (1000 + uid, keys.arrival) for uid, keys in entries}
    wanted[10**6] = (6, 0.0)  # another row now: not taken
    return SortBlock(payload, wanted)


@pytest.mark.parametrize("blocks", [False, True], ids=["keys", "blocks"])
@pytest.mark.parametrize("seed", range(8))
def test_orders_stay_equal_to_a_sort_from_scratch(seed: int, blocks: bool) -> None:
    rng = random.Random(seed)
    index = SortIndex()
    held: dict[int, SortKeys] = {}
    next_uid = 1
    for step in range(60):
        if held and rng.random() < 0.4:  # expunge a few, anywhere
            for uid in rng.sample(sorted(held), min(len(held), rng.randrange(1, 4))):
                assert index.pop(uid) == held.pop(uid)
        elif blocks and held and rng.random() < 0.15:  # whole keys asked (THREAD)
            uid = rng.choice(sorted(held))
            if rng.random() < 0.5:
                assert index.get(uid, _keys(rng, 0)) == held[uid]
            for block in index.pending():
                index.unpack(block, block.keys())
            assert not index.pending()
        else:  # new mail: one, a few, or a burst that drops the orders
            count = rng.choice([1, 2, 3, 40])
            batch = [(uid, _keys(rng, uid)) for uid in range(next_uid, next_uid + count)]
            next_uid += count
            rng.shuffle(batch)  # loaded in any order
            if blocks and rng.random() < 0.7:
                again = rng.sample(sorted(held), min(len(held), 2))
                index.add_block(_block(batch, {uid: held[uid] for uid in again}))
            else:
                index.add(batch)
            held.update(batch)
        if step % 3 == 0:
            continue  # let changes pile up between SORTs
        # the whole mailbox, by UID and by sequence number, and a searched subset
        in_order = sorted(held)
        views = [
            {uid: uid for uid in in_order},
            {uid: seq for seq, uid in enumerate(in_order, start=1)},
            {uid: seq for seq, uid in enumerate(in_order, start=1) if rng.random() < 0.5},
        ]
        for wanted in views:
            for name in SORT_CRITERIA:
                for reverse in (False, True):
                    got = index.sorted_numbers(name, reverse, wanted)
                    assert got == _from_scratch(held, wanted, name, reverse), (step, name)
    assert len(index) == len(held) and sorted(index) == sorted(held)
    assert all(index.get(uid, _keys(rng, 0)) == keys for uid, keys in held.items())
    assert not index.pending()  # every block unpacked by those


def test_a_message_not_held_sends_the_caller_the_general_way() -> None:
    index = SortIndex()
    rng = random.Random(1)
    index.add([(1, _keys(rng, 1)), (2, _keys(rng, 2))])
    assert index.sorted_numbers("SUBJECT", False, {1: 1, 2: 2, 3: 3}) is None
    assert index.missing({1: 1, 3: 2, 5: 3}) == [3, 5]


def test_expunged_keys_stay_readable_for_sessions_that_still_see_them() -> None:
    index = SortIndex()
    keys = _keys(random.Random(2), 7)
    index.add([(7, keys)])
    index.order("FROM")
    assert index.pop(7) == keys
    assert 7 not in index and index.get(7, keys._replace(subject="other")) == keys
    assert index.sorted_numbers("FROM", False, {7: 1}) is None  # not in the orders
    assert index.pop(7) is None
    index.add([(7, keys)])  # held again (a session that loaded it meanwhile)
    assert index.sorted_numbers("FROM", False, {7: 1}) == [1]


def test_kept_answers_go_with_any_change() -> None:
    index = SortIndex()
    rng = random.Random(3)
    index.add([(1, _keys(rng, 1))])
    index.keep_answer(("SORT", "x"), b"sig", b"* SORT 1\r\n")
    assert index.answer(("SORT", "x"), b"sig") == b"* SORT 1\r\n"
    assert index.answer(("SORT", "x"), b"other") is None
    assert index.answer(("SORT", "y"), b"sig") is None
    index.add([(2, _keys(rng, 2))])
    assert index.answer(("SORT", "x"), b"sig") is None
    index.keep_answer(("SORT", "x"), b"sig", b"* SORT 1\r\n")
    index.pop(2)
    assert index.answer(("SORT", "x"), b"sig") is None
    for n in range(20):  # bounded: the oldest go
        index.keep_answer(("SORT", n), b"sig", b"a")
    assert index.answer(("SORT", 0), b"sig") is None
    assert index.answer(("SORT", 19), b"sig") == b"a"


def test_orders_take_four_bytes_a_message() -> None:
    """The orders of 50,000 messages: an array of 4-byte UIDs per criterion used, on top
    of the keys (whose bound tests/imap/message/test_sortkeys.py asserts). Measured
    apart from the keys: interning them can resize the interpreter's table of interned
    strings, a cost that depends on what ran before in the process."""
    rng = random.Random(4)
    index = SortIndex()
    index.add([(uid, _keys(rng, uid)) for uid in range(1, 50_001)])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for name in ("ARRIVAL", "DATE", "SUBJECT", "FROM"):
        index.order(name)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"four orders of 50,000 messages: {used / 1e6:.2f} MB", file=sys.stderr)
    assert used < 4 * 50_000 * 4 * 1.1

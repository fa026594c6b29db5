"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES over ThreadItems (RFC 5256)."""

from __future__ import annotations

from cryptmail.imap.message._thread import ThreadItem, thread_ordered_subject, thread_references


def item(
    n: int,
    subject: str = "",
    date: float | None = None,
    *,
    mid: str | None = None,
    refs: tuple[str, ...] = (),
    reply: bool = False,
) -> ThreadItem:
    return ThreadItem(n, n, float(n) if date is None else date, subject, reply, mid, refs)


def test_ordered_subject_groups_by_base_subject_in_date_order() -> None:
    items = [
        item(1, "B", 50), item(2, "A", 10), item(3, "B", 5), item(4, "A", 20),
        item(5, "C", 1), item(6, "A", 20),
    ]  # fmt: skip
    # Threads by their first date: C(5), B(3 then 1), A(2 then 4, 6: equal dates keep
    # mailbox order); children are siblings of each other under the first.
    assert thread_ordered_subject(items) == b"(5)(3 1)(2 (4)(6))"


def test_references_chain_siblings_and_missing_parents() -> None:
    items = [
        item(1, "a", mid="1@x"),
        item(2, "a", mid="2@x", refs=("1@x",), reply=True),
        item(3, "a", mid="3@x", refs=("1@x", "2@x"), reply=True),
        item(4, "a", mid="4@x", refs=("1@x",), reply=True),
        item(5, "b", mid="5@x", refs=("gone@x",)),  # parent missing: a dummy, pruned
        item(6, "c", mid="6@x", refs=("gone2@x",)),
        item(7, "d", mid="7@x", refs=("gone2@x",)),  # two children of one dummy: kept
    ]
    assert thread_references(items) == b"(1 (2 3)(4))(5)((6)(7))"


def test_references_merge_threads_by_subject() -> None:
    items = [
        item(1, "meeting", mid="1@x"),
        item(2, "meeting", mid="2@x", reply=True),  # "Re: meeting" without references
        item(3, "other", mid="3@x"),
        item(4, "meeting", mid="4@x"),  # same subject, not a reply: a dummy holds both
        item(5, "", mid="5@x"),  # empty subjects never merge
        item(6, "", mid="6@x"),
    ]
    assert thread_references(items) == b"((1 2)(4))(3)(5)(6)"


def test_references_loops_duplicates_and_self_references() -> None:
    items = [
        item(1, "x", mid="a@x", refs=("b@x",)),
        item(2, "y", mid="b@x", refs=("a@x",)),  # would close a loop: not linked
        item(3, "z", mid="a@x"),  # duplicate Message-ID: on its own
        item(4, "w", mid="c@x", refs=("c@x",)),  # names itself: no parent
        item(5, "v", mid="d@x", refs=("e@x", "d@x")),  # guessed parent e, then itself
    ]
    # 2 is parent of 1 (1's References made b@x its parent); 2's own reference a@x
    # would make a loop, so it stays a root.
    assert thread_references(items) == b"(2 1)(3)(4)(5)"


def test_references_in_reply_to_parent_replaces_a_guessed_one() -> None:
    items = [
        item(1, "p", mid="p@x"),
        item(2, "q", mid="q@x"),
        item(3, "r", mid="r@x", refs=("q@x", "s@x")),  # guesses q is s's parent
        item(4, "s", mid="s@x", refs=("p@x",)),  # s itself says p
    ]
    assert thread_references(items) == b"(1 4 3)(2)"


def test_dummy_date_is_its_first_childs() -> None:
    items = [
        item(1, "late", 100, mid="1@x"),
        item(2, "m", 50, mid="2@x", refs=("root@x",)),
        item(3, "n", 10, mid="3@x", refs=("root@x",)),
    ]
    assert thread_references(items) == b"((3)(2))(1)"


def test_long_chains_and_wide_trees_do_not_recurse() -> None:
    count = 50_000
    chain = [item(1, "s", mid="0@x")] + [
        item(n + 1, "s", mid=f"{n}@x", refs=(f"{n - 1}@x",), reply=True) for n in range(1, count)
    ]
    out = thread_references(chain)
    assert out == b"(" + b" ".join(b"%d" % n for n in range(1, count + 1)) + b")"
    wide = [item(1, "s", mid="0@x")] + [
        item(n, "s", mid=f"{n}@x", refs=("0@x",), reply=True) for n in range(2, count + 1)
    ]
    out = thread_references(wide)
    assert out.startswith(b"(1 (2)(3)") and out.count(b"(") == count
    assert thread_ordered_subject(chain).count(b"(") == count


def test_empty() -> None:
    assert thread_references([]) == b""
    assert thread_ordered_subject([]) == b""

"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 sections 3 and 4).

Both take the messages a search found, each as a :class:`ThreadItem`, and give the
body of the ``* THREAD`` response. Every walk over the tree is a loop, not a recursion:
a mailbox of 50,000 messages may be one reply chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = ["ThreadItem", "thread_ordered_subject", "thread_references"]


class ThreadItem(NamedTuple):
    """One message: the number to answer with, its mailbox position and its keys."""

    number: int
    """Sequence number or UID, as the command asked."""
    sequence: int
    date: float
    """Sent date, or the internal date where the message has none."""
    subject: str
    """Base subject in collation form."""
    reply: bool
    message_id: str | None
    references: tuple[str, ...]


class _Node:
    __slots__ = ("children", "item", "parent")

    def __init__(self, item: ThreadItem | None = None) -> None:
        self.item = item
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def first(self) -> ThreadItem:
        """The message that stands for this node when sorting (a dummy: its first child)."""
        node = self
        while node.item is None:
            node = node.children[0]
        return node.item

    def order(self) -> tuple[float, int]:
        item = self.first()
        return item.date, item.sequence


def _write(roots: Iterable[_Node]) -> bytes:
    """The THREAD response body: ``(1 2 (3)(4 5))(6)``."""
    out = bytearray()
    stack: list[_Node | bytes] = []
    for root in reversed(list(roots)):
        stack += [b")", root, b"("]
    while stack:
        entry = stack.pop()
        if isinstance(entry, bytes):
            out += entry
            continue
        node = entry
        if node.item is not None:
            out += b"%d" % node.item.number
            while len(node.children) == 1:  # a chain stays in one list
                node = node.children[0]
                out += b" %d" % node.first().number
            if not node.children:
                continue
            out += b" "
        for child in reversed(node.children):
            stack += [b")", child, b"("]
    return bytes(out)


def thread_ordered_subject(items: Sequence[ThreadItem]) -> bytes:
    """ORDEREDSUBJECT: one thread per base subject, the earliest message its parent and
    the others its children in date order; threads in the order of their first date."""
    ordered = sorted(items, key=lambda i: (i.subject, i.date, i.sequence))
    roots: list[_Node] = []
    current: _Node | None = None
    for item in ordered:
        node = _Node(item)
        if current is not None and current.first().subject == item.subject:
            current.children.append(node)
            continue
        current = node
        roots.append(node)
    roots.sort(key=_Node.order)
    return _write(roots)


def _is_ancestor(candidate: _Node, node: _Node) -> bool:
    """Whether ``candidate`` is ``node`` or one of its ancestors."""
    if candidate is not node and not candidate.children:
        return False  # a leaf is nobody's ancestor: no walk up a long chain
    walk: _Node | None = node
    while walk is not None:
        if walk is candidate:
            return True
        walk = walk.parent
    return False


def _link(parent: _Node, child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _build(items: Sequence[ThreadItem]) -> list[_Node]:
    """Step 1 (links from Message-ID, References, In-Reply-To) and step 2 (the roots)."""
    by_id: dict[str, _Node] = {}
    nodes: list[_Node] = []
    for item in sorted(items, key=lambda i: i.sequence):
        node: _Node | None = None
        if item.message_id is not None:
            found = by_id.get(item.message_id)
            if found is None:
                node = by_id[item.message_id] = _Node(item)
            elif found.item is None:  # met in a References before: a dummy until now
                found.item = item
                node = found
        if node is None:  # no Message-ID, or a duplicate: the message is on its own
            node = _Node(item)
        nodes.append(node)
        # 1A: each reference the parent of the next, unless linked already or a loop.
        previous: _Node | None = None
        for ref in item.references:
            ref_node = by_id.get(ref)
            if ref_node is None:
                ref_node = by_id[ref] = _Node()
            if (
                previous is not None
                and ref_node.parent is None
                and not _is_ancestor(ref_node, previous)
            ):
                _link(previous, ref_node)
            previous = ref_node
        # 1B: the last reference is the message's parent. A parent guessed from other
        # messages' References goes first, even where the new link would be a loop
        # (a message naming itself last): then the message has no parent.
        if previous is not None and node.parent is not previous:
            if node.parent is not None:
                node.parent.children.remove(node)
                node.parent = None
            if not _is_ancestor(node, previous):
                _link(previous, node)
    seen: set[int] = set()
    roots: list[_Node] = []
    for node in [*nodes, *by_id.values()]:
        if node.parent is None and id(node) not in seen:
            seen.add(id(node))
            roots.append(node)
    return roots


def _prune(roots: list[_Node]) -> list[_Node]:
    """Step 3: dummies without children go; others give their children to their parent,
    except at the top, where only a dummy with one child does."""
    post_order: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        post_order.append(node)
        stack.extend(node.children)
    for node in reversed(post_order):  # children before their parents
        kept: list[_Node] = []
        for child in node.children:
            if child.item is None:
                kept.extend(child.children)
            else:
                kept.append(child)
        for child in kept:
            child.parent = node
        node.children = kept
    top: list[_Node] = []
    for root in roots:
        if root.item is None and len(root.children) <= 1:
            for child in root.children:
                child.parent = None
                top.append(child)
        else:
            top.append(root)
    return top


def _sort_all(roots: list[_Node]) -> None:
    """Every set of siblings by date (then mailbox order), the top level last."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        node.children.sort(key=_Node.order)
        stack.extend(node.children)
    roots.sort(key=_Node.order)


def _merge_subjects(roots: list[_Node]) -> list[_Node]:
    """Step 5: top-level threads with the same base subject join."""
    table: dict[str, _Node] = {}
    for root in roots:
        subject = root.first().subject
        if not subject:
            continue
        held = table.get(subject)
        if held is None:
            table[subject] = root
        elif held.item is not None and (
            root.item is None or (held.item.reply and not root.first().reply)
        ):
            table[subject] = root
    made: list[_Node] = []
    for root in roots:
        subject = root.first().subject
        held = table.get(subject) if subject else None
        if held is None or held is root or root.parent is not None:
            continue  # alone, the thread kept, or a thread already wrapped in a dummy
        if held.item is None and root.item is None:
            for child in list(root.children):
                _link(held, child)
        elif held.item is None:
            _link(held, root)
        elif root.first().reply and not held.item.reply:
            _link(held, root)
        else:
            dummy = _Node()
            table[subject] = dummy
            _link(dummy, held)
            _link(dummy, root)
            made.append(dummy)
    # Step 6 sorts the top level again, so the order here does not matter.
    return [
        node for node in (*roots, *made) if node.parent is None and (node.item or node.children)
    ]


def thread_references(items: Sequence[ThreadItem]) -> bytes:
    """REFERENCES: threads from Message-ID, References and In-Reply-To, then joined by
    base subject (RFC 5256 section 4, steps 1 to 6)."""
    roots = _prune(_build(items))
    roots.sort(key=_Node.order)  # step 4
    for root in roots:
        if root.item is None:
            root.children.sort(key=_Node.order)
    roots.sort(key=_Node.order)
    roots = _merge_subjects(roots)
    _sort_all(roots)  # step 6
    return _write(roots)

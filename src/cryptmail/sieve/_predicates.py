"""A script's tests compiled once into closures, for the interpreter's usual case.

Most tests in real scripts are header, address and envelope tests with fixed keys under
:is or :contains: the tree walker in `_interpreter` answers them by looking up the test's
name, its arguments, its comparator and match type, and folding its keys, at every
delivery. `compile_predicates` does all of that once, when the script is compiled, and
keeps for each such test node a closure that only reads the run's `Facts`. Such a test
is a `Leaf` (data, not a closure of its own), and a test of leaves (one, or anyof /
allof of them) is one closure that reads them in a loop: a call per if, not per test.
The values a leaf compares (a header's decoded values, folded; an address part) are
made once per message (`SieveMessage.memo`), or once per run for what depends on the
envelope or the delimiters (`Facts.own`), where every rule on them finds them. A test it
does not cover (variables, :matches, :regex, relational, i;ascii-numeric, body, hasflag,
duplicate, mailboxexists, an address test of a header that holds no addresses, which is
a run-time error) gets no closure, and the tree walker answers it as before; so do
anyof, allof and not around such a test. A closure answers exactly what the tree walker
answers (tests/sieve/test_predicates.py compares them on generated tests).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from cryptmail.sieve._match import ascii_lower
from cryptmail.sieve._message import ADDRESS_HEADERS, SieveEnvelope, SieveMessage
from cryptmail.sieve._tree import Node

Predicate = Callable[["Facts"], bool]
"""A compiled test: (what one run reads) -> whether it holds."""


class Facts:
    """What the compiled tests of one run read: the message, the envelope, the recipient
    delimiters, and the values made from them. Values of the message alone (a header's,
    an address part without delimiters) are kept in `SieveMessage.memo`, shared by every
    run on the message; those of the envelope or the delimiters in `own`, this run's."""

    __slots__ = ("delimiters", "envelope", "message", "own", "shared")

    def __init__(self, message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> None:
        self.message = message
        self.envelope = envelope
        self.delimiters = delimiters
        self.shared = message.memo
        self.own: dict[str, list[str]] = {}


def address_parts(part: str, addresses: Sequence[str], delimiters: str) -> list[str]:
    """The `part` (:all, :localpart, :domain, :user, :detail) of each address, as the
    address and envelope tests compare them (RFC 5228 2.7.4, RFC 5233)."""
    out: list[str] = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        if part == ":all":
            out.append(address)
        elif part == ":localpart":
            out.append(local)
        elif part == ":domain":
            out.append(domain)
        else:
            cut = min((i for i in (local.find(d) for d in delimiters) if i >= 0), default=-1)
            if part == ":user":
                out.append(local if cut < 0 else local[:cut])
            elif cut >= 0:  # :detail; an address without one matches nothing
                out.append(local[cut + 1 :])
    return out


Compute = Callable[[Facts], list[str]]
"""Where a test's values come from (unfolded); run once per message (or per run, for
values of the envelope or the delimiters), then kept: twenty rules on one header read
and fold it once."""


class Leaf(NamedTuple):
    """A header, address or envelope test under :is or :contains, all of it chosen at
    compile time: where its values are kept (the run's memo if `own`, else the
    message's) and under which key, how they are made and folded, the match type, and
    the keys folded, as a set (:is) and in order (:contains). A tuple, not closures:
    an anyof of three tests reads three leaves in one call, not four calls."""

    own: bool
    key: str
    compute: Compute
    fold: bool
    is_: bool
    as_set: frozenset[str]
    keys: tuple[str, ...]


def _matching(
    node: Node, kind: str, parts: tuple[str, ...], compute: Compute, own: bool
) -> Leaf | None:
    """The leaf of a test whose values `compute` makes; None for a match type or
    comparator the tree walker must answer."""
    match_type = node.string("match-type", ":is")
    comparator = node.tagged("comparator")
    keys = node.strings("key-list")
    if comparator in (None, "i;ascii-casemap"):
        fold = True
        keys = tuple(ascii_lower(k) for k in keys)
    elif comparator == "i;octet":
        fold = False
    else:
        return None
    if match_type not in (":is", ":contains"):
        return None
    key = _memo_key(kind, fold, *parts)
    return Leaf(own, key, compute, fold, match_type == ":is", frozenset(keys), keys)


def _any_leaves(leaves: tuple[Leaf, ...]) -> Predicate:
    """Whether any of the leaves holds (one leaf: whether it holds)."""

    # Written out, not a call per leaf: this runs for every rule of every message.
    def test(facts: Facts) -> bool:
        for own, key, compute, fold, is_, as_set, keys in leaves:
            memo = facts.own if own else facts.shared
            found = memo.get(key)
            if found is None:
                found = memo[key] = _folded(compute(facts), fold)
            if is_:
                if not as_set.isdisjoint(found):
                    return True
            else:
                for value in found:
                    for wanted in keys:
                        if wanted in value:
                            return True
        return False

    return test


def _all_leaves(leaves: tuple[Leaf, ...]) -> Predicate:
    """Whether every leaf holds."""

    def test(facts: Facts) -> bool:
        for own, key, compute, fold, is_, as_set, keys in leaves:
            memo = facts.own if own else facts.shared
            found = memo.get(key)
            if found is None:
                found = memo[key] = _folded(compute(facts), fold)
            if is_:
                if as_set.isdisjoint(found):
                    return False
            elif not any(wanted in value for value in found for wanted in keys):
                return False
        return True

    return test


def _memo_key(kind: str, fold: bool, *parts: str) -> str:
    """A memo key as one string: a string keeps its hash, a tuple of them hashes them all
    at every lookup. NUL separates the parts; a script holds no NUL."""
    return sys.intern("\0".join((kind, "fold" if fold else "octet", *parts)))


def _folded(values: list[str], fold: bool) -> list[str]:
    return [ascii_lower(v) for v in values] if fold else values


def _header(node: Node) -> Leaf | None:
    # Folded here, as `SieveMessage.header` folds them: one memo entry for every spelling.
    names = tuple(ascii_lower(n) for n in node.strings("header-names"))
    if len(names) == 1:
        (name,) = names

        def one(facts: Facts) -> list[str]:
            return facts.message.header(name)

        return _matching(node, "header", names, one, own=False)

    def values(facts: Facts) -> list[str]:
        message = facts.message
        return [v for n in names for v in message.header(n)]

    return _matching(node, "header", names, values, own=False)


def _address(node: Node) -> Leaf | None:
    names = tuple(ascii_lower(n) for n in node.strings("header-list"))
    if any(n not in ADDRESS_HEADERS for n in names):
        return None  # a header without addresses is a run-time error: the walker says so
    part = node.string("address-part", ":all")

    def values(facts: Facts) -> list[str]:
        message = facts.message
        addresses = [a for n in names for a in message.addresses(n)]
        return address_parts(part, addresses, facts.delimiters)

    # :user and :detail depend on the delimiters, which are the run's.
    return _matching(node, "address", (part, *names), values, own=part in (":user", ":detail"))


def _envelope(node: Node) -> Leaf | None:
    wanted = tuple(
        p for p in (ascii_lower(p) for p in node.strings("header-list")) if p in ("from", "to")
    )
    part = node.string("address-part", ":all")

    def values(facts: Facts) -> list[str]:
        envelope = facts.envelope
        addresses = [envelope.sender if p == "from" else envelope.recipient for p in wanted]
        return address_parts(part, addresses, facts.delimiters)

    return _matching(node, "envelope", (part, *wanted), values, own=True)


def _size(node: Node) -> Predicate | None:
    limit = node.arguments.get("limit")
    if not isinstance(limit, int):
        return None
    if node.arguments.get("comparator") == ":over":
        return lambda facts: facts.message.size > limit
    return lambda facts: facts.message.size < limit


def _exists(node: Node) -> Predicate:
    names = node.strings("header-names")
    return lambda facts: all(facts.message.has_header(n) for n in names)


_LEAVES: dict[str, Callable[[Node], Leaf | None]] = {
    "header": _header,
    "address": _address,
    "envelope": _envelope,
}


def _compile(node: Node, out: dict[int, Predicate]) -> Predicate | None:
    """The node's closure (recorded in `out` by the node's id), or None."""
    name = node.name
    predicate: Predicate | None
    make_leaf = _LEAVES.get(name)
    if make_leaf is not None:
        leaf = make_leaf(node)
        predicate = None if leaf is None else _any_leaves((leaf,))
    elif name == "true":
        predicate = _always(True)
    elif name == "false":
        predicate = _always(False)
    elif name == "not":
        inner = _compile(node.test(), out)
        predicate = None if inner is None else _negation(inner)
    elif name in ("anyof", "allof"):
        tests = node.tests()
        parts = [_compile(t, out) for t in tests]  # each gets its own, if it can
        leaves = [_leaf_of(t) for t in tests]
        if any(p is None for p in parts):
            predicate = None
        elif all(leaf is not None for leaf in leaves):
            ready = tuple(leaf for leaf in leaves if leaf is not None)
            predicate = _any_leaves(ready) if name == "anyof" else _all_leaves(ready)
        else:
            closures = tuple(p for p in parts if p is not None)
            predicate = _any(closures) if name == "anyof" else _all(closures)
    elif name == "size":
        predicate = _size(node)
    elif name == "exists":
        predicate = _exists(node)
    else:
        predicate = None
    if predicate is not None:
        out[id(node)] = predicate
    return predicate


def _leaf_of(node: Node) -> Leaf | None:
    make_leaf = _LEAVES.get(node.name)
    return None if make_leaf is None else make_leaf(node)


def _always(answer: bool) -> Predicate:
    return lambda facts: answer


def _negation(inner: Predicate) -> Predicate:
    return lambda facts: not inner(facts)


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    def test(facts: Facts) -> bool:
        for part in parts:
            if part(facts):
                return True
        return False

    return test


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    def test(facts: Facts) -> bool:
        for part in parts:
            if not part(facts):
                return False
        return True

    return test


def _tests_in(nodes: Sequence[Node]) -> Iterator[tuple[Node, Node]]:
    """Every if/elsif with its outermost test, through every block."""
    for node in nodes:
        if node.name in ("if", "elsif"):
            yield node, node.test()
        yield from _tests_in(node.block)


def compile_predicates(
    commands: Sequence[Node], extensions: frozenset[str]
) -> dict[int, Predicate]:
    """A closure for every test node of `commands` that can have one, by the node's id
    (the compiled script holds the nodes, so the ids stay theirs), and for each if and
    elsif whose test has one, the same closure by the if's id. None at all for a script
    with variables: its names and keys may change while it runs."""
    out: dict[int, Predicate] = {}
    if "variables" in extensions:
        return out
    for node, test in _tests_in(commands):
        predicate = _compile(test, out)
        if predicate is not None:
            out[id(node)] = predicate  # the walker asks by the if (elsif) itself
    return out

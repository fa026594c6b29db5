"""A script's tests compiled once into closures, for the interpreter's usual case.

Most tests in real scripts are header, address and envelope tests with fixed keys under
:is or :contains: the tree walker in `_interpreter` answers them by looking up the test's
name, its arguments, its comparator and match type, and folding its keys, at every
delivery. `compile_predicates` does all of that once, when the script is compiled, and
keeps for each such test node a closure that only reads the message; the values a
closure compares (a header's decoded values, folded; an address part) are made once per
message and kept in `SieveMessage.memo`, where every rule on them finds them. A test it does not
cover (variables, :matches, :regex, relational, i;ascii-numeric, body, hasflag,
duplicate, mailboxexists, an address test of a header that holds no addresses, which is
a run-time error) gets no closure, and the tree walker answers it as before; so do
anyof, allof and not around such a test. A closure answers exactly what the tree walker
answers (tests/sieve/test_predicates.py compares them on generated tests).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence

from cryptmail.sieve._match import ascii_lower
from cryptmail.sieve._message import ADDRESS_HEADERS, SieveEnvelope, SieveMessage
from cryptmail.sieve._tree import Node

Predicate = Callable[[SieveMessage, SieveEnvelope, str], bool]
"""A compiled test: (message, envelope, recipient delimiters) -> whether it holds."""


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


Values = Callable[[SieveMessage, SieveEnvelope, str], list[str]]
"""Where a test's values come from, folded when its comparator folds: made once per
message and kept in `SieveMessage.memo`, so twenty rules on one header fold it once."""


def _matching(node: Node, values_of: Callable[[bool], Values]) -> Predicate | None:
    """The test's match over its values, keys folded once; None for a match type or
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
    values = values_of(fold)
    if match_type == ":is":
        as_set = frozenset(keys)

        def is_(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> bool:
            return not as_set.isdisjoint(values(message, envelope, delimiters))

        return is_
    if match_type == ":contains":

        def contains(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> bool:
            for value in values(message, envelope, delimiters):
                for key in keys:
                    if key in value:
                        return True
            return False

        return contains
    return None


def _memo_key(kind: str, fold: bool, *parts: str) -> str:
    """A memo key as one string: a string keeps its hash, a tuple of them hashes them all
    at every lookup. NUL separates the parts; a script holds no NUL."""
    return sys.intern("\0".join((kind, "fold" if fold else "octet", *parts)))


def _folded(values: list[str], fold: bool) -> list[str]:
    return [ascii_lower(v) for v in values] if fold else values


def _header(node: Node) -> Predicate | None:
    names = node.strings("header-names")

    def values_of(fold: bool) -> Values:
        key = _memo_key("header", fold, *names)

        def values(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> list[str]:
            memo = message.memo
            found = memo.get(key)
            if found is None:
                found = memo[key] = _folded([v for n in names for v in message.header(n)], fold)
            return found

        return values

    return _matching(node, values_of)


def _address(node: Node) -> Predicate | None:
    names = node.strings("header-list")
    if any(ascii_lower(n) not in ADDRESS_HEADERS for n in names):
        return None  # a header without addresses is a run-time error: the walker says so
    part = node.string("address-part", ":all")
    by_delimiters = part in (":user", ":detail")

    def values_of(fold: bool) -> Values:
        key = _memo_key("address", fold, part, *names)

        def values(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> list[str]:
            memo = message.memo
            at = (key, delimiters) if by_delimiters else key
            found = memo.get(at)
            if found is None:
                addresses = [a for n in names for a in message.addresses(n)]
                found = memo[at] = _folded(address_parts(part, addresses, delimiters), fold)
            return found

        return values

    return _matching(node, values_of)


def _envelope(node: Node) -> Predicate | None:
    wanted = tuple(ascii_lower(p) for p in node.strings("header-list"))
    part = node.string("address-part", ":all")

    def values_of(fold: bool) -> Values:
        key = _memo_key("envelope", fold, part, *wanted)

        def values(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> list[str]:
            memo = message.memo
            at = (key, envelope.sender, envelope.recipient, delimiters)
            found = memo.get(at)
            if found is None:
                addresses = [
                    envelope.sender if p == "from" else envelope.recipient
                    for p in wanted
                    if p in ("from", "to")
                ]
                found = memo[at] = _folded(address_parts(part, addresses, delimiters), fold)
            return found

        return values

    return _matching(node, values_of)


def _size(node: Node) -> Predicate | None:
    limit = node.arguments.get("limit")
    if not isinstance(limit, int):
        return None
    if node.arguments.get("comparator") == ":over":
        return lambda message, envelope, delimiters: message.size > limit
    return lambda message, envelope, delimiters: message.size < limit


def _exists(node: Node) -> Predicate:
    names = node.strings("header-names")
    return lambda message, envelope, delimiters: all(message.has_header(n) for n in names)


def _compile(node: Node, out: dict[int, Predicate]) -> Predicate | None:
    """The node's closure (recorded in `out` by the node's id), or None."""
    name = node.name
    predicate: Predicate | None
    if name == "true":
        predicate = _always(True)
    elif name == "false":
        predicate = _always(False)
    elif name == "not":
        inner = _compile(node.test(), out)
        predicate = None if inner is None else _negation(inner)
    elif name in ("anyof", "allof"):
        parts = [_compile(t, out) for t in node.tests()]  # each gets its own, if it can
        if any(p is None for p in parts):
            predicate = None
        else:
            ready = tuple(p for p in parts if p is not None)
            predicate = _any(ready) if name == "anyof" else _all(ready)
    elif name == "header":
        predicate = _header(node)
    elif name == "address":
        predicate = _address(node)
    elif name == "envelope":
        predicate = _envelope(node)
    elif name == "size":
        predicate = _size(node)
    elif name == "exists":
        predicate = _exists(node)
    else:
        predicate = None
    if predicate is not None:
        out[id(node)] = predicate
    return predicate


def _always(answer: bool) -> Predicate:
    return lambda message, envelope, delimiters: answer


def _negation(inner: Predicate) -> Predicate:
    return lambda message, envelope, delimiters: not inner(message, envelope, delimiters)


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    def test(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> bool:
        for part in parts:
            if part(message, envelope, delimiters):
                return True
        return False

    return test


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    def test(message: SieveMessage, envelope: SieveEnvelope, delimiters: str) -> bool:
        for part in parts:
            if not part(message, envelope, delimiters):
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

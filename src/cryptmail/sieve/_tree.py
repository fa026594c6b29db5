"""The compiled form of a Sieve script: a tree of frozen nodes the interpreter walks.

sievelib's own command objects are mutable, keep strings with their quotes and escapes,
and carry parser state; `compile_script` turns them into these nodes once, so the
interpreter (run at every delivery) reads decoded values only and never imports sievelib.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptmail.sieve._predicates import Predicate


@dataclass(frozen=True)
class Node:
    """One command (control or action) or one test of a script.

    ``arguments`` is keyed by sievelib's argument names ("match-type", "key-list",
    "mailbox", ...); a tagged argument holds its tag, and the value that follows the tag
    (":comparator" "i;octet", ":days" 7) is in ``extras`` under the same name.
    ``block`` holds the commands inside ``{ }`` of if/elsif/else.
    """

    name: str
    line: int
    arguments: Mapping[str, Value] = field(default_factory=dict)
    extras: Mapping[str, Value] = field(default_factory=dict)
    block: tuple[Node, ...] = ()

    def string(self, name: str, default: str = "") -> str:
        value = self.arguments.get(name, default)
        return value if isinstance(value, str) else default

    def strings(self, name: str) -> tuple[str, ...]:
        """A string-list argument; a single string is a list of one (RFC 5228 2.4.2.1)."""
        value = self.arguments.get(name, ())
        if isinstance(value, str):
            return (value,)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return tuple(v for v in value if isinstance(v, str))
        return ()

    def tagged(self, name: str) -> Value | None:
        return self.extras.get(name)

    def test(self) -> Node:
        value = self.arguments.get("test")
        if not isinstance(value, Node):
            raise TypeError(f"{self.name} at line {self.line} has no test")
        return value

    def tests(self) -> tuple[Node, ...]:
        value = self.arguments.get("tests", ())
        return tuple(v for v in value if isinstance(v, Node)) if isinstance(value, tuple) else ()


# One argument value after decoding: a string, a string list, a number, a tag (":is",
# kept lower-case), or a test / test list for the control commands and anyof/allof/not.
Value = str | tuple[str, ...] | int | Node | tuple[Node, ...]


@dataclass(frozen=True)
class CompiledScript:
    """A script that passed `compile_script`: its commands and the extensions it requires."""

    name: str
    commands: tuple[Node, ...]
    extensions: frozenset[str]
    size: int
    predicates: Mapping[int, Predicate] = field(default_factory=dict, compare=False, repr=False)
    """The tests `_predicates` compiled to closures, by the id of their node in `commands`."""

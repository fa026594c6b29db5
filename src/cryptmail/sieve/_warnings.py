"""What a script that compiles will still not do here: ManageSieve's WARNINGS (RFC 5804 1.3).

A script is valid when it parses, but some of what it asks this server does not carry
out as the user expects: redirect and vacation need `sieve.smtp_relay` (without it the
message is kept and no reply goes out), personal includes are not read at delivery, and
a global include needs that script in `sieve.global_dir`. The user hears of it when the
script is stored, not from a message that never arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptmail.sieve._tree import CompiledScript, Node

MAX_WARNINGS_TEXT = 900
"""Longest warnings text: it must stay a quoted string (a client reads the OK line as one
line), below ManageSieve's 1024-byte quoted limit."""


@dataclass(frozen=True)
class ServerAbilities:
    """What delivery on this server can do, from the configuration."""

    relay: bool
    global_script: Callable[[str], bool]
    """Whether a global script of this name exists (`include :global`)."""


def _commands(nodes: tuple[Node, ...]) -> Iterator[Node]:
    for node in nodes:
        yield node
        yield from _commands(node.block)


def _include(node: Node, server: ServerAbilities) -> str | None:
    location = node.string("location", ":personal").lstrip(":")
    name = node.string("script")
    optional = "optional" in node.arguments
    outcome = "it is skipped" if optional else "the script stops there and the message is kept"
    if location == "personal":
        return f"include of personal script {name!r} is not run at delivery here; {outcome}"
    if "${" not in name and not server.global_script(name):
        return f"there is no global script {name!r} on this server; {outcome}"
    return None


def script_warnings(script: CompiledScript, server: ServerAbilities) -> list[str]:
    """One line per command this server will not carry out as written, in script order."""
    found: list[str] = []
    for node in _commands(script.commands):
        text = None
        if node.name == "redirect" and not server.relay:
            text = "redirect is not sent: this server has no SMTP relay; the message is kept"
        elif node.name == "vacation" and not server.relay:
            text = "vacation replies are not sent: this server has no SMTP relay"
        elif node.name == "include":
            text = _include(node, server)
        if text is not None:
            found.append(f"line {node.line}: {text}")
    return found


def warnings_text(warnings: list[str]) -> str:
    """The warnings as one line of at most MAX_WARNINGS_TEXT characters."""
    text = ""
    for index, warning in enumerate(warnings):
        rest = len(warnings) - index
        more = f" (and {rest} more)"
        candidate = f"{text}; {warning}" if text else warning
        if len(candidate) + len(more) > MAX_WARNINGS_TEXT and index:
            return text + more
        text = candidate[:MAX_WARNINGS_TEXT]
    return text

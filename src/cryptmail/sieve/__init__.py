"""cryptmail.sieve: Sieve (RFC 5228 and extensions) for delivery.

`compile_script` parses a script once (sievelib does the grammar) into a frozen tree;
the interpreter runs compiled scripts against one message and its envelope and returns
the actions; delivery/ carries them out. Nothing here touches the network or the store.
"""

from cryptmail.sieve._syntax import (
    DEFAULT_MAX_COMMANDS,
    DEFAULT_MAX_SCRIPT_SIZE,
    SUPPORTED_EXTENSIONS,
    compile_script,
)
from cryptmail.sieve._tree import CompiledScript, Node

__all__ = [
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_SCRIPT_SIZE",
    "SUPPORTED_EXTENSIONS",
    "CompiledScript",
    "Node",
    "compile_script",
]

"""cryptmail.sieve: Sieve (RFC 5228 and extensions) for delivery, and users' scripts.

`compile_script` parses a script once (sievelib does the grammar) into a frozen tree;
the interpreter runs compiled scripts against one message and its envelope and returns
the actions; delivery/ carries them out. `_scripts` keeps each user's scripts sealed
under a subkey of the server key, at most one active (ManageSieve writes them, delivery
reads the active one with `load_active_script`).
"""

from cryptmail.sieve._scripts import (
    MAX_NAME_CHARS,
    ScriptInfo,
    ScriptLimits,
    check_name,
    delete_script,
    get_script,
    have_space,
    list_scripts,
    load_active_script,
    put_script,
    rename_script,
    set_active,
)
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
    "MAX_NAME_CHARS",
    "SUPPORTED_EXTENSIONS",
    "CompiledScript",
    "Node",
    "ScriptInfo",
    "ScriptLimits",
    "check_name",
    "compile_script",
    "delete_script",
    "get_script",
    "have_space",
    "list_scripts",
    "load_active_script",
    "put_script",
    "rename_script",
    "set_active",
]

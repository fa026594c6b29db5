"""cryptmail.sieve: Sieve (RFC 5228 and extensions) for delivery, and users' scripts.

`compile_script` parses a script once (sievelib does the grammar) into a frozen tree;
the interpreter runs compiled scripts against one message and its envelope and returns
the actions; delivery/ carries them out. `_scripts` keeps each user's scripts sealed
under a subkey of the server key, at most one active (ManageSieve writes them, delivery
reads the active one, still sealed, with `read_active_sync` and opens it only when
its digest is new).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptmail.sieve._actions import (
        Action,
        DuplicateMark,
        FileInto,
        Keep,
        Redirect,
        Reject,
        SieveResult,
        Vacation,
    )
    from cryptmail.sieve._interpreter import (
        SieveContext,
        normalize_flags,
        run_scripts,
    )
    from cryptmail.sieve._message import SieveEnvelope, SieveMessage
    from cryptmail.sieve._records import (
        REDIRECT_RECORD_SECONDS,
        claim_record,
        duplicate_record,
        expire_records,
        note_record,
        redirect_record,
        seen_record,
        vacation_record,
    )
    from cryptmail.sieve._scripts import (
        MAX_NAME_CHARS,
        ActiveScript,
        ScriptInfo,
        ScriptLimits,
        check_name,
        delete_script,
        get_script,
        have_space,
        list_scripts,
        load_active_script,
        put_script,
        read_active_script,
        read_active_sync,
        rename_script,
        set_active,
    )
    from cryptmail.sieve._settings import SieveSettings
    from cryptmail.sieve._syntax import (
        DEFAULT_MAX_COMMANDS,
        DEFAULT_MAX_SCRIPT_SIZE,
        SUPPORTED_EXTENSIONS,
        compile_script,
    )
    from cryptmail.sieve._tree import CompiledScript, Node
    from cryptmail.sieve._warnings import ServerAbilities, script_warnings, warnings_text

__all__ = [
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_SCRIPT_SIZE",
    "MAX_NAME_CHARS",
    "REDIRECT_RECORD_SECONDS",
    "SUPPORTED_EXTENSIONS",
    "Action",
    "ActiveScript",
    "CompiledScript",
    "DuplicateMark",
    "FileInto",
    "Keep",
    "Node",
    "Redirect",
    "Reject",
    "ScriptInfo",
    "ScriptLimits",
    "ServerAbilities",
    "SieveContext",
    "SieveEnvelope",
    "SieveMessage",
    "SieveResult",
    "SieveSettings",
    "Vacation",
    "check_name",
    "claim_record",
    "compile_script",
    "delete_script",
    "duplicate_record",
    "expire_records",
    "get_script",
    "have_space",
    "list_scripts",
    "load_active_script",
    "normalize_flags",
    "note_record",
    "put_script",
    "read_active_script",
    "read_active_sync",
    "redirect_record",
    "rename_script",
    "run_scripts",
    "script_warnings",
    "seen_record",
    "set_active",
    "vacation_record",
    "warnings_text",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_actions": (
        "Action",
        "DuplicateMark",
        "FileInto",
        "Keep",
        "Redirect",
        "Reject",
        "SieveResult",
        "Vacation",
    ),
    "_interpreter": (
        "SieveContext",
        "normalize_flags",
        "run_scripts",
    ),
    "_message": (
        "SieveEnvelope",
        "SieveMessage",
    ),
    "_records": (
        "REDIRECT_RECORD_SECONDS",
        "claim_record",
        "duplicate_record",
        "expire_records",
        "note_record",
        "redirect_record",
        "seen_record",
        "vacation_record",
    ),
    "_settings": ("SieveSettings",),
    "_scripts": (
        "MAX_NAME_CHARS",
        "ActiveScript",
        "ScriptInfo",
        "ScriptLimits",
        "check_name",
        "delete_script",
        "get_script",
        "have_space",
        "list_scripts",
        "load_active_script",
        "put_script",
        "read_active_script",
        "read_active_sync",
        "rename_script",
        "set_active",
    ),
    "_syntax": (
        "DEFAULT_MAX_COMMANDS",
        "DEFAULT_MAX_SCRIPT_SIZE",
        "SUPPORTED_EXTENSIONS",
        "compile_script",
    ),
    "_tree": (
        "CompiledScript",
        "Node",
    ),
    "_warnings": (
        "ServerAbilities",
        "script_warnings",
        "warnings_text",
    ),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_actions":
        from cryptmail.sieve import _actions

        value = getattr(_actions, name)
    elif module == "_interpreter":
        from cryptmail.sieve import _interpreter

        value = getattr(_interpreter, name)
    elif module == "_message":
        from cryptmail.sieve import _message

        value = getattr(_message, name)
    elif module == "_records":
        from cryptmail.sieve import _records

        value = getattr(_records, name)
    elif module == "_settings":
        from cryptmail.sieve import _settings

        value = getattr(_settings, name)
    elif module == "_scripts":
        from cryptmail.sieve import _scripts

        value = getattr(_scripts, name)
    elif module == "_syntax":
        from cryptmail.sieve import _syntax

        value = getattr(_syntax, name)
    elif module == "_tree":
        from cryptmail.sieve import _tree

        value = getattr(_tree, name)
    elif module == "_warnings":
        from cryptmail.sieve import _warnings

        value = getattr(_warnings, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

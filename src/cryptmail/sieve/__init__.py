"""cryptmail.sieve: Sieve (RFC 5228 and extensions) for delivery, and users' scripts.

`compile_script` parses a script once (sievelib does the grammar) into a frozen tree;
the interpreter runs compiled scripts against one message and its envelope and returns
the actions; delivery/ carries them out. `_scripts` keeps each user's scripts sealed
under a subkey of the server key, at most one active (ManageSieve writes them, delivery
reads the active one, still sealed, with `read_active_sync` and opens it only when
its digest is new).
"""

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
    SieveSettings,
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

"""cryptmail.sieve: Sieve (RFC 5228 and extensions) for delivery.

`compile_script` parses a script once (sievelib does the grammar) into a frozen tree;
the interpreter runs compiled scripts against one message and its envelope and returns
the actions; delivery/ carries them out. Nothing here touches the network or the store.
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
    claim_record,
    duplicate_record,
    expire_records,
    note_record,
    seen_record,
    vacation_record,
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
    "SUPPORTED_EXTENSIONS",
    "Action",
    "CompiledScript",
    "DuplicateMark",
    "FileInto",
    "Keep",
    "Node",
    "Redirect",
    "Reject",
    "SieveContext",
    "SieveEnvelope",
    "SieveMessage",
    "SieveResult",
    "SieveSettings",
    "Vacation",
    "claim_record",
    "compile_script",
    "duplicate_record",
    "expire_records",
    "normalize_flags",
    "note_record",
    "run_scripts",
    "seen_record",
    "vacation_record",
]

"""cryptmail.sieve: users' Sieve scripts, their syntax, and running them at delivery.

`_scripts` keeps each user's scripts sealed under a subkey of the server key, at most
one active (ManageSieve writes them, delivery reads the active one with
`load_active_script`).
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

__all__ = [
    "MAX_NAME_CHARS",
    "ScriptInfo",
    "ScriptLimits",
    "check_name",
    "delete_script",
    "get_script",
    "have_space",
    "list_scripts",
    "load_active_script",
    "put_script",
    "rename_script",
    "set_active",
]

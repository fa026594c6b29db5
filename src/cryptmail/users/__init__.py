"""cryptmail.users: the ISPmail tables (domains, users, aliases) and password hashes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptmail.users._common import is_common_password
    from cryptmail.users._directory import (
        Alias,
        User,
        add_alias,
        add_domain,
        add_user,
        domain_of,
        find_user,
        fold_address,
        get_user,
        get_user_by_id,
        list_aliases,
        list_domains,
        list_users,
        normalize_address,
        remove_alias,
        resolve_recipient,
        resolve_recipient_sync,
        set_crypt,
        set_password_hash,
        set_quota,
    )
    from cryptmail.users._rules import PasswordRule, check_new_password, password_problems
    from cryptmail.users._schemes import (
        WRITABLE_SCHEMES,
        hash_password,
        needs_rehash,
        verify_password,
    )

__all__ = [
    "WRITABLE_SCHEMES",
    "Alias",
    "PasswordRule",
    "User",
    "add_alias",
    "add_domain",
    "add_user",
    "check_new_password",
    "domain_of",
    "find_user",
    "fold_address",
    "get_user",
    "get_user_by_id",
    "hash_password",
    "is_common_password",
    "list_aliases",
    "list_domains",
    "list_users",
    "needs_rehash",
    "normalize_address",
    "password_problems",
    "remove_alias",
    "resolve_recipient",
    "resolve_recipient_sync",
    "set_crypt",
    "set_password_hash",
    "set_quota",
    "verify_password",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_common": ("is_common_password",),
    "_directory": (
        "Alias",
        "User",
        "add_alias",
        "add_domain",
        "add_user",
        "domain_of",
        "find_user",
        "fold_address",
        "get_user",
        "get_user_by_id",
        "list_aliases",
        "list_domains",
        "list_users",
        "normalize_address",
        "remove_alias",
        "resolve_recipient",
        "resolve_recipient_sync",
        "set_crypt",
        "set_password_hash",
        "set_quota",
    ),
    "_rules": (
        "PasswordRule",
        "check_new_password",
        "password_problems",
    ),
    "_schemes": (
        "WRITABLE_SCHEMES",
        "hash_password",
        "needs_rehash",
        "verify_password",
    ),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_common":
        from cryptmail.users import _common

        value = getattr(_common, name)
    elif module == "_directory":
        from cryptmail.users import _directory

        value = getattr(_directory, name)
    elif module == "_rules":
        from cryptmail.users import _rules

        value = getattr(_rules, name)
    elif module == "_schemes":
        from cryptmail.users import _schemes

        value = getattr(_schemes, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

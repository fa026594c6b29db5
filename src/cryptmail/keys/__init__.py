"""cryptmail.keys: key pairs, key slots, password change, recovery, app passwords.

Everything that turns a credential into an unlocked account, and back. One function per
job: `verify_login` (a login, with its side effects), `open_account_key` (check a
credential, write nothing), `open_private_keys`, `change_password`, `recover`,
`reset_password` (the admin reset), `add_app_password` / `revoke_app_password`.
`unlock_account` is `verify_login` plus `open_private_keys`. `CredentialWatcher` ends
live sessions whose credential generation moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptmail.keys._account import AccountKey, UnlockedAccount
    from cryptmail.keys._app_passwords import (
        AppPasswordInfo,
        add_app_password,
        list_app_passwords,
        revoke_app_password,
    )
    from cryptmail.keys._cache import UnlockedAccounts
    from cryptmail.keys._credential import open_account_key
    from cryptmail.keys._events import (
        KEY_ROTATED,
        PASSWORD_CHANGED,
        Event,
        list_events,
        record_event,
    )
    from cryptmail.keys._faults import checkpoint
    from cryptmail.keys._generation import read_generation, read_generation_of
    from cryptmail.keys._integrity import (
        DeliveryCheck,
        check_delivery,
        note_crypt_changed_at_delivery,
        note_key_unverified,
        seal_delivery,
        verified_public_key,
        verify_key_rows,
    )
    from cryptmail.keys._keyring import (
        KeyPairInfo,
        account_uuid,
        active_public_key,
        export_private_keys,
        list_key_pairs,
        open_private_keys,
    )
    from cryptmail.keys._login import unlock_account, verify_login, verify_only
    from cryptmail.keys._password import change_password
    from cryptmail.keys._provision import NewAccount, create_user, provision_keys
    from cryptmail.keys._recovery import (
        ensure_recovery_code,
        has_recovery_code,
        recover,
        renew_recovery_code,
    )
    from cryptmail.keys._rekey import rotate_key_pair
    from cryptmail.keys._reset import reset_password
    from cryptmail.keys._server_key import (
        ServerKey,
        delivery_retry_tag,
        install_server_key,
        load_server_key,
        server_key,
    )
    from cryptmail.keys._throttle import LoginThrottle, Reservation
    from cryptmail.keys._watcher import CredentialWatcher, Watch

__all__ = [
    "KEY_ROTATED",
    "PASSWORD_CHANGED",
    "AccountKey",
    "AppPasswordInfo",
    "CredentialWatcher",
    "DeliveryCheck",
    "Event",
    "KeyPairInfo",
    "LoginThrottle",
    "NewAccount",
    "Reservation",
    "ServerKey",
    "UnlockedAccount",
    "UnlockedAccounts",
    "Watch",
    "account_uuid",
    "active_public_key",
    "add_app_password",
    "change_password",
    "check_delivery",
    "checkpoint",
    "create_user",
    "delivery_retry_tag",
    "ensure_recovery_code",
    "export_private_keys",
    "has_recovery_code",
    "install_server_key",
    "list_app_passwords",
    "list_events",
    "list_key_pairs",
    "load_server_key",
    "note_crypt_changed_at_delivery",
    "note_key_unverified",
    "open_account_key",
    "open_private_keys",
    "provision_keys",
    "read_generation",
    "read_generation_of",
    "record_event",
    "recover",
    "renew_recovery_code",
    "reset_password",
    "revoke_app_password",
    "rotate_key_pair",
    "seal_delivery",
    "server_key",
    "unlock_account",
    "verified_public_key",
    "verify_key_rows",
    "verify_login",
    "verify_only",
]

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_account": (
        "AccountKey",
        "UnlockedAccount",
    ),
    "_app_passwords": (
        "AppPasswordInfo",
        "add_app_password",
        "list_app_passwords",
        "revoke_app_password",
    ),
    "_cache": ("UnlockedAccounts",),
    "_credential": ("open_account_key",),
    "_events": (
        "KEY_ROTATED",
        "PASSWORD_CHANGED",
        "Event",
        "list_events",
        "record_event",
    ),
    "_faults": ("checkpoint",),
    "_generation": (
        "read_generation",
        "read_generation_of",
    ),
    "_integrity": (
        "DeliveryCheck",
        "check_delivery",
        "note_crypt_changed_at_delivery",
        "note_key_unverified",
        "seal_delivery",
        "verified_public_key",
        "verify_key_rows",
    ),
    "_keyring": (
        "KeyPairInfo",
        "account_uuid",
        "active_public_key",
        "export_private_keys",
        "list_key_pairs",
        "open_private_keys",
    ),
    "_login": (
        "unlock_account",
        "verify_login",
        "verify_only",
    ),
    "_password": ("change_password",),
    "_provision": (
        "NewAccount",
        "create_user",
        "provision_keys",
    ),
    "_recovery": (
        "ensure_recovery_code",
        "has_recovery_code",
        "recover",
        "renew_recovery_code",
    ),
    "_rekey": ("rotate_key_pair",),
    "_reset": ("reset_password",),
    "_server_key": (
        "ServerKey",
        "delivery_retry_tag",
        "install_server_key",
        "load_server_key",
        "server_key",
    ),
    "_throttle": (
        "LoginThrottle",
        "Reservation",
    ),
    "_watcher": (
        "CredentialWatcher",
        "Watch",
    ),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_account":
        from cryptmail.keys import _account

        value = getattr(_account, name)
    elif module == "_app_passwords":
        from cryptmail.keys import _app_passwords

        value = getattr(_app_passwords, name)
    elif module == "_cache":
        from cryptmail.keys import _cache

        value = getattr(_cache, name)
    elif module == "_credential":
        from cryptmail.keys import _credential

        value = getattr(_credential, name)
    elif module == "_events":
        from cryptmail.keys import _events

        value = getattr(_events, name)
    elif module == "_faults":
        from cryptmail.keys import _faults

        value = getattr(_faults, name)
    elif module == "_generation":
        from cryptmail.keys import _generation

        value = getattr(_generation, name)
    elif module == "_integrity":
        from cryptmail.keys import _integrity

        value = getattr(_integrity, name)
    elif module == "_keyring":
        from cryptmail.keys import _keyring

        value = getattr(_keyring, name)
    elif module == "_login":
        from cryptmail.keys import _login

        value = getattr(_login, name)
    elif module == "_password":
        from cryptmail.keys import _password

        value = getattr(_password, name)
    elif module == "_provision":
        from cryptmail.keys import _provision

        value = getattr(_provision, name)
    elif module == "_recovery":
        from cryptmail.keys import _recovery

        value = getattr(_recovery, name)
    elif module == "_rekey":
        from cryptmail.keys import _rekey

        value = getattr(_rekey, name)
    elif module == "_reset":
        from cryptmail.keys import _reset

        value = getattr(_reset, name)
    elif module == "_server_key":
        from cryptmail.keys import _server_key

        value = getattr(_server_key, name)
    elif module == "_throttle":
        from cryptmail.keys import _throttle

        value = getattr(_throttle, name)
    elif module == "_watcher":
        from cryptmail.keys import _watcher

        value = getattr(_watcher, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

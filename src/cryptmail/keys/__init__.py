"""cryptmail.keys: key pairs, key slots, password change, recovery, app passwords.

Everything that turns a credential into an unlocked account, and back. One function per
job: `verify_login` (a login, with its side effects), `open_account_key` (check a
credential, write nothing), `open_private_keys`, `change_password`, `recover`,
`reset_password` (the admin reset), `add_app_password` / `revoke_app_password`.
`unlock_account` is `verify_login` plus `open_private_keys`. `CredentialWatcher` ends
live sessions whose credential generation moved.
"""

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

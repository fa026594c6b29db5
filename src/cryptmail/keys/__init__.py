"""cryptmail.keys: key pairs, key slots, password change, recovery, app passwords.

Everything that turns a credential into an unlocked account, and back.
"""

from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._app_passwords import (
    AppPasswordInfo,
    add_app_password,
    list_app_passwords,
    revoke_app_password,
)
from cryptmail.keys._cache import UnlockedAccounts
from cryptmail.keys._events import Event, list_events, record_event
from cryptmail.keys._faults import checkpoint
from cryptmail.keys._keyring import (
    KeyPairInfo,
    account_uuid,
    active_public_key,
    export_private_keys,
    list_key_pairs,
    rotate_key_pair,
)
from cryptmail.keys._login import unlock_account
from cryptmail.keys._password import (
    change_password,
    has_recovery_code,
    recover,
    renew_recovery_code,
    verify_only,
)
from cryptmail.keys._provision import NewAccount, create_user, provision_keys
from cryptmail.keys._throttle import LoginThrottle

__all__ = [
    "AppPasswordInfo",
    "Event",
    "KeyPairInfo",
    "LoginThrottle",
    "NewAccount",
    "UnlockedAccount",
    "UnlockedAccounts",
    "account_uuid",
    "active_public_key",
    "add_app_password",
    "change_password",
    "checkpoint",
    "create_user",
    "export_private_keys",
    "has_recovery_code",
    "list_app_passwords",
    "list_events",
    "list_key_pairs",
    "provision_keys",
    "record_event",
    "recover",
    "renew_recovery_code",
    "revoke_app_password",
    "rotate_key_pair",
    "unlock_account",
    "verify_only",
]

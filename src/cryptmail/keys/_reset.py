"""The admin reset: a password set without the old one, where no key depends on it.

Only a user with crypt = 0 and no key pair yet may be reset. Any other user's key is (or
will be, at the first login) locked by the password; replacing the hash alone would
lock them out of their own mail for good, so the old password or the recovery code is
needed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import PasswordResetRefused, UnknownUser
from cryptmail.keys import _events as events
from cryptmail.keys._generation import bump_generation
from cryptmail.keys._kdf import hash_for_slot
from cryptmail.keys._keyring import account_uuid
from cryptmail.secret import Password
from cryptmail.users import User, find_user, set_password_hash

log = logging.getLogger(__name__)


async def _resettable(engine: AsyncEngine, email: str) -> User:
    async with engine.connect() as conn:
        user = await find_user(conn, email)
        has_keys = user is not None and await account_uuid(conn, user.id) is not None
    if user is None:
        raise UnknownUser(f"no user has the address {email}")
    if user.crypt != 0 or has_keys:
        log.warning("password reset refused for user id %d: key locked", user.id)
        raise PasswordResetRefused(
            f"the mail key of user id {user.id} is locked by their password (or new mail "
            "is sealed to keys made from it); setting a password without the old one "
            "would lock them out of their mail for good: change it with the old "
            "password or the recovery code"
        )
    return user


async def reset_password(
    engine: AsyncEngine,
    email: str,
    new: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    check_new: Callable[[User], None] | None = None,
) -> User:
    """Set the password of `email` without the old one (one Argon2id for the hash).

    `check_new(user)` runs after the user was found resettable and before any work, so
    the caller's password rules refuse in that order. Returns the user. Raises
    UnknownUser, PasswordResetRefused (also when keys were made meanwhile), and what
    `check_new` raises.
    """
    user = await _resettable(engine, email)
    if check_new is not None:
        check_new(user)
    new_hash = await hash_for_slot(new, crypto.argon2)
    async with engine.begin() as conn:
        if await account_uuid(conn, user.id) is not None:
            # A first login made keys while the hash was made: they go with the old one.
            raise PasswordResetRefused(
                f"user id {user.id} got keys at a login just now; nothing was changed: "
                "change the password with the old one"
            )
        await set_password_hash(conn, user.id, new_hash)
        await bump_generation(conn, user.id)  # ends cached logins in every process
        await events.record_event(conn, user.id, events.PASSWORD_CHANGED, client_ip)
    log.info("password reset for user id %d (crypt 0, no keys)", user.id)
    return user

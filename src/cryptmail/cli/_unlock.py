"""The one way a CLI command unlocks a user's account, and its rule on app passwords.

Commands that read or add mail (`mailbox list|export|encrypt`, `import maildir`) accept
an app password, as IMAP does: it opens the same mail there. Commands that change or
reveal keys and credentials (`key rotate|export`, `user recovery-code`, `user passwd`,
`app-password add`) need the login password: an app password handed to a device must
not yield the private keys or new credentials.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import wrong_credential
from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.users import get_user

# For the --help texts, so each command states the rule it follows.
MAIL_CREDENTIAL = "the user's login password or one of their app passwords"
KEY_CREDENTIAL = "the user's login password (an app password is refused)"


async def unlock_user(
    engine: AsyncEngine, config: Config, email: str, password: Password, *, app_password: bool
) -> UnlockedAccount:
    """`email`'s unlocked account; `app_password` says whether an app password may stand
    in for the login password. Keys are made now for a user without any (an ISPmail
    row), as at a first login.

    Raises UnknownUser, and KeySlotError with a one-line message when the password does
    not unlock the key.
    """
    async with engine.connect() as conn:
        await get_user(conn, email)  # an unknown address gets its own message
    try:
        account, _slot = await unlock_account(
            engine, email, password, config.crypto, allow_app_password=app_password
        )
    except AuthenticationFailed as exc:
        raise wrong_credential("the password", email) from exc
    return account

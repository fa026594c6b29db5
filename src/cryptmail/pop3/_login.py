"""Logging in: USER/PASS and AUTH PLAIN end here, with the login throttle and the cache
of unlocked accounts that IMAP and the web share.

Every wrong password or unknown user gets the one answer `-ERR [AUTH] Authentication
failed.` (RFC 3206); the operator log says which, by id. A spent throttle allowance is
`[LOGIN-DELAY]` (RFC 2449: try again later, the password may be right) and a full
Argon2 queue `[SYS/TEMP]`, both before any password is checked.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.errors import AuthenticationFailed, KdfBusy, TooManyAttempts
from cryptmail.keys import LoginThrottle, UnlockedAccount, UnlockedAccounts
from cryptmail.plainauth import MAX_ADDRESS, Credentials, LoginRefused, decode_plain_response
from cryptmail.pop3._wire import err
from cryptmail.store import create_default_mailboxes

log = logging.getLogger(__name__)

FAILED: Final = err("Authentication failed.", "AUTH")
INVALID: Final = err("Invalid base64 data in the SASL response.")
THROTTLED: Final = err("Too many login attempts; try again later.", "LOGIN-DELAY")
BUSY: Final = err("The server is busy; try again later.", "SYS/TEMP")
PRIVACY: Final = err("Plaintext authentication disallowed on non-secure connections.", "AUTH")


def plain_credentials(response: str) -> Credentials:
    """The SASL PLAIN response, base64 as the client sent it; LoginRefused with the one
    answer for anything malformed."""
    return decode_plain_response(response, invalid=INVALID, failed=FAILED)


async def log_in(
    engine: AsyncEngine,
    throttle: LoginThrottle,
    accounts: UnlockedAccounts,
    credentials: Credentials,
    client_ip: str,
) -> UnlockedAccount:
    """Unlock the account (the caller releases it), or raise LoginRefused."""
    address = credentials.address
    if not address or len(address) > MAX_ADDRESS:
        raise LoginRefused(FAILED)
    try:
        account = await throttle.check(
            address,
            client_ip,
            lambda: accounts.acquire(address, credentials.password, client_ip=client_ip),
            protocol="pop3",
        )
    except TooManyAttempts as exc:
        log.info("POP3 login refused by the throttle for %.0f s", exc.retry_after_s)
        raise LoginRefused(THROTTLED) from None
    except AuthenticationFailed as exc:
        log.info("POP3 login failed (%s)", exc.detail or "no detail")
        raise LoginRefused(FAILED) from None
    except KdfBusy:
        log.warning("POP3 login refused: the Argon2 queue is full (crypto.argon2.max_queued)")
        raise LoginRefused(BUSY) from None
    try:
        await create_default_mailboxes(engine, account.user.id)
    except BaseException:
        accounts.release(account)
        raise
    log.info("POP3 login of user id %d", account.user.id)
    return account

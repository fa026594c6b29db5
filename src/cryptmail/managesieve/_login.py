"""Logging in to ManageSieve: SASL PLAIN (RFC 4616) checked as SMTP AUTH is.

Scripts are sealed under the server key, so a session needs no key of the user's: the
login is the SASL listener's check, the login throttle shared with IMAP, POP3 and the
web, then `keys.verify_login` (its hash schemes, rehash of a weak hash, app passwords,
keys made at a first login). The account key it opens is dropped at once.

Every wrong password, unknown user or malformed response gets one answer; the operator
log says which, by id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import UserId
from cryptmail.errors import AuthenticationFailed, KdfBusy, StoreUnavailable, TooManyAttempts
from cryptmail.keys import LoginThrottle, read_generation_of, verify_login
from cryptmail.managesieve._wire import no
from cryptmail.plainauth import MAX_ADDRESS, Credentials, LoginRefused, decode_plain_response

log = logging.getLogger(__name__)

FAILED: Final = no("Authentication failed.")
INVALID: Final = no("Invalid base64 data in the SASL response.")
THROTTLED: Final = no("Too many login attempts; try again later.", "TRYLATER")
BUSY: Final = no("The server is busy; try again later.", "TRYLATER")


@dataclass(frozen=True)
class LoggedIn:
    """Who a session acts for, and the credential generation its login was checked at
    (the session ends when it moves); nothing of the credential is kept."""

    user_id: UserId
    address: str
    generation: int


def plain_credentials(response: bytes) -> Credentials:
    """The SASL PLAIN response, base64 as the client sent it; LoginRefused with the one
    answer for anything malformed."""
    return decode_plain_response(response, invalid=INVALID, failed=FAILED)


async def log_in(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    throttle: LoginThrottle,
    credentials: Credentials,
    client_ip: str,
) -> LoggedIn:
    """Check the credentials; the user they belong to, or LoginRefused."""
    address = credentials.address.strip()
    if not address or len(address) > MAX_ADDRESS:
        raise LoginRefused(FAILED)
    try:
        # Read before the check: a change between the two ends the session at the next
        # poll instead of letting it outlive the change.
        async with engine.connect() as conn:
            generation = await read_generation_of(conn, address)
        opened = await throttle.check(
            address,
            client_ip,
            lambda: verify_login(
                engine, address, credentials.password, crypto, client_ip=client_ip
            ),
        )
    except TooManyAttempts as exc:
        log.info("ManageSieve login refused by the throttle for %.0f s", exc.retry_after_s)
        raise LoginRefused(THROTTLED) from None
    except AuthenticationFailed as exc:
        log.info("ManageSieve login failed (%s)", exc.detail or "no detail")
        raise LoginRefused(FAILED) from None
    except KdfBusy:
        log.warning(
            "ManageSieve login refused: the Argon2 queue is full (crypto.argon2.max_queued)"
        )
        raise LoginRefused(BUSY) from None
    except StoreUnavailable as exc:
        log.warning("ManageSieve login not checked: %s", exc)
        raise LoginRefused(no("The server cannot check logins now.", "TRYLATER")) from None
    if opened.credential_generation is not None:
        generation = opened.credential_generation  # this login re-keyed
    user = opened.user
    del opened  # the account key goes with it: nothing of the login is kept
    log.info("ManageSieve login of user id %d", user.id)
    # Keys made by this very login (none before) start at generation 0.
    return LoggedIn(user.id, user.email, generation or 0)

"""Every credential check of the web pages and the API goes through the shared throttle.

The same LoginThrottle instance as IMAP: each check reserves a token for the address and
the client first; a wrong credential keeps them, anything else gives them back. With a
bucket empty the check is not run: TooManyAttempts goes to the error table (429 with
Retry-After), as KdfBusy does (503). The operator log records the outcome by address
tag only (a keyed hash), never the credential.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cryptmail.errors import AuthenticationFailed, TooManyAttempts
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.web._context import WebContext

log = logging.getLogger(__name__)

T = TypeVar("T")

# A plain hash of an address is reversed by hashing guessed addresses (the domain is
# public and local parts are few). Under a key that lives only in this process's memory
# the tag cannot be; the price is that tags from before a restart do not match those
# after it. A key kept in the data directory would keep them stable, but would leak
# with the data directory, which a backup holds beside the logs.
_TAG_KEY = secrets.token_bytes(32)


def address_tag(address: str) -> str:
    """A short tag of an address for the log: the same address gets the same tag until
    the process restarts (which address, not who)."""
    folded = address.strip().lower().encode("utf-8", "replace")
    return hmac.new(_TAG_KEY, folded, hashlib.sha256).hexdigest()[:12]


async def throttled(
    context: WebContext,
    address: str,
    client_ip: str,
    what: str,
    attempt: Callable[[], Awaitable[T]],
) -> T:
    """Reserve the throttle's tokens, run `attempt`, settle them by the outcome.

    Raises TooManyAttempts (without running `attempt`), AuthenticationFailed (after
    counting the failure) and whatever `attempt` raises (the tokens given back).
    """
    try:
        result = await context.throttle.check(address, client_ip, attempt, protocol="web")
    except TooManyAttempts:
        log.info(
            "web %s refused by the throttle for address %s from %s",
            what,
            address_tag(address),
            client_ip,
        )
        raise
    except AuthenticationFailed as exc:
        log.info(
            "web %s failed for address %s from %s: %s",
            what,
            address_tag(address),
            client_ip,
            exc.detail,
        )
        raise
    log.info("web %s succeeded for address %s from %s", what, address_tag(address), client_ip)
    return result


async def unlock(
    context: WebContext, address: str, password: Password, client_ip: str, what: str
) -> UnlockedAccount:
    """Unlock with the login password (never an app password), throttled.

    The caller keeps the account only for the current request. Raises AuthenticationFailed.
    """

    async def attempt() -> UnlockedAccount:
        account, _slot = await unlock_account(
            context.engine,
            address,
            password,
            context.config.crypto,
            client_ip=client_ip,
            allow_app_password=False,
        )
        return account

    return await throttled(context, address, client_ip, what, attempt)

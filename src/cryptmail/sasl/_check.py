"""Checking a SASL login: the throttle, then the password or an app password.

The same path as an IMAP LOGIN without the session: the login throttle shared with IMAP
and the web, `keys.verify_login` (its hash schemes, rehash of a weak hash, keys made at
a first login), and nothing kept afterwards. The account key the check opens is dropped
at once; no private key is unsealed, nothing is cached, so a revoked app password or a
changed password fails at the very next AUTH. Only for a user whose old mail is staged
(`import maildir --at-first-login`) are the private keys unsealed, and handed with the
password to the import this login starts in the background.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import (
    AuthenticationFailed,
    KdfBusy,
    StoreUnavailable,
    TooManyAttempts,
)
from cryptmail.keys import AccountKey, LoginThrottle, verify_login
from cryptmail.secret import Password

log = logging.getLogger(__name__)

_MAX_ADDRESS = 254


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TRY_LATER = "try later"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    user: str = ""
    """The user's address as stored (what Postfix records as sasl_username); on OK only."""


class StagedImports(Protocol):
    """Where a login starts the user's staged import of old mail (`serve` passes
    store.FirstLoginImports; SASL does not reach down to the store itself)."""

    async def after_key_login(self, opened: AccountKey, password: Password) -> None: ...


@dataclass(frozen=True)
class SaslChecker:
    """What a SASL login is checked against; shared by every connection of a listener."""

    engine: AsyncEngine
    crypto: CryptoConfig
    throttle: LoginThrottle
    imports: StagedImports | None = None
    """Where a login starts the user's staged import (None: it waits for IMAP or POP3)."""

    async def check(self, address: str, password: Password, client_ip: str) -> Verdict:
        address = address.strip()
        if not address or len(address) > _MAX_ADDRESS:
            return Verdict(Outcome.FAILED)
        try:
            opened = await self.throttle.check(
                address,
                client_ip,
                lambda: verify_login(
                    self.engine, address, password, self.crypto, client_ip=client_ip
                ),
                protocol="sasl",
            )
        except TooManyAttempts as exc:
            log.info("SASL login refused by the throttle for %.0f s", exc.retry_after_s)
            return Verdict(Outcome.TRY_LATER)
        except AuthenticationFailed as exc:
            log.info("SASL login failed (%s)", exc.detail or "no detail")
            return Verdict(Outcome.FAILED)
        except KdfBusy:
            log.warning("SASL login refused: the Argon2 queue is full (crypto.argon2.max_queued)")
            return Verdict(Outcome.TRY_LATER)
        except StoreUnavailable as exc:  # the database too: DatabaseUnavailable
            log.warning("SASL login not checked: %s", exc)
            return Verdict(Outcome.TRY_LATER)
        user = opened.user
        if self.imports is not None:
            await self.imports.after_key_login(opened, password)
        del opened  # the account key goes with it: nothing of the login is kept
        log.info("SASL login of user id %d", user.id)
        return Verdict(Outcome.OK, user.email)

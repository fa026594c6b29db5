"""Server-side web sessions, in memory only.

The cookie carries nothing but a random session id. A session holds the signed-in
user's id and address, the credential generation the sign-in was checked at, and a few
single-use CSRF tokens; never a password, a recovery code or an unlocked key. A page
that needs the key asks for the password again and drops the key when its request ends.
A session whose generation is no longer the account's is signed out (`_signed_in`).

Sessions end after `IDLE_S` without a request or `LIFETIME_S` after sign-in. Anonymous
sessions (made for the sign-in and recovery forms) and signed-in ones have separate
caps, so a flood of anonymous visits cannot push signed-in users out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptmail.db import UserId

IDLE_S: Final = 30 * 60
"""A session unused this long is gone."""
LIFETIME_S: Final = 12 * 60 * 60
"""A session older than this is gone, however busy."""
MAX_ANONYMOUS: Final = 20_000
MAX_SIGNED_IN: Final = 20_000
CSRF_TOKENS_PER_SESSION: Final = 16
"""Outstanding form tokens per session (one per rendered form, used up on submit)."""


@dataclass(repr=False)
class Session:
    """One browser's session. Tokens and id never appear in repr."""

    id: str
    created: float
    seen: float
    user_id: UserId | None = None
    address: str = ""
    # cm_accounts.credential_generation as the sign-in saw it (keys/_generation.py).
    generation: int = 0
    csrf_tokens: list[str] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None

    def __repr__(self) -> str:
        return f"Session(user_id={self.user_id}, tokens={len(self.csrf_tokens)})"


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


class SessionStore:
    """The sessions of one process. Not shared between processes: behind a load
    balancer, pin web clients to one frontend or sign in again."""

    def __init__(
        self,
        *,
        idle_s: float = IDLE_S,
        lifetime_s: float = LIFETIME_S,
        max_anonymous: int = MAX_ANONYMOUS,
        max_signed_in: int = MAX_SIGNED_IN,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_s = idle_s
        self._lifetime_s = lifetime_s
        self._max = {False: max_anonymous, True: max_signed_in}
        self._clock = _clock
        self._pools: dict[bool, OrderedDict[str, Session]] = {
            False: OrderedDict(),
            True: OrderedDict(),
        }

    def __len__(self) -> int:
        return sum(len(pool) for pool in self._pools.values())

    def get(self, session_id: str) -> Session | None:
        """The live session with this id (and mark it used), or None."""
        now = self._clock()
        for pool in self._pools.values():
            session = pool.get(session_id)
            if session is None:
                continue
            if now - session.seen > self._idle_s or now - session.created > self._lifetime_s:
                del pool[session_id]
                return None
            session.seen = now
            pool.move_to_end(session_id)
            return session
        return None

    def new(self) -> Session:
        """A fresh anonymous session."""
        now = self._clock()
        session = Session(new_session_id(), now, now)
        self._put(session)
        return session

    def sign_in(
        self, old: Session | None, user_id: UserId, address: str, *, generation: int = 0
    ) -> Session:
        """A new session for the user, checked at credential `generation`; the old one
        (and its tokens) is gone. A fresh id at sign-in means an id planted before
        sign-in is worth nothing."""
        if old is not None:
            self.drop(old)
        now = self._clock()
        session = Session(
            new_session_id(),
            now,
            now,
            user_id=user_id,
            address=address.lower(),
            generation=generation,
        )
        self._put(session)
        return session

    def drop(self, session: Session) -> None:
        self._pools[session.signed_in].pop(session.id, None)

    def drop_user(self, *, user_id: UserId | None = None, address: str = "") -> int:
        """End every session of a user (after a password change or recovery)."""
        pool = self._pools[True]
        doomed = [
            s.id
            for s in pool.values()
            if s.user_id == user_id or (address and s.address == address.lower())
        ]
        for session_id in doomed:
            del pool[session_id]
        return len(doomed)

    def issue_csrf(self, session: Session) -> str:
        """A new single-use form token for this session."""
        token = secrets.token_urlsafe(32)
        session.csrf_tokens.append(token)
        del session.csrf_tokens[:-CSRF_TOKENS_PER_SESSION]
        return token

    def consume_csrf(self, session: Session, token: str) -> bool:
        """Whether `token` was issued to this session and not used yet; uses it up."""
        given = token.encode("ascii", "replace")
        found = None
        for index, issued in enumerate(session.csrf_tokens):
            if hmac.compare_digest(issued.encode("ascii"), given):
                found = index
        if found is None:
            return False
        del session.csrf_tokens[found]
        return True

    def _put(self, session: Session) -> None:
        pool = self._pools[session.signed_in]
        pool[session.id] = session
        while len(pool) > self._max[session.signed_in]:
            pool.popitem(last=False)


SCOPE_KEY: Final = "cryptmail.session"
"""Where the session middleware puts the request's SessionSlot in the ASGI scope."""


@dataclass(repr=False)
class SessionSlot:
    """The session of one request: what the cookie named, and what it is now."""

    store: SessionStore
    cookie_id: str | None
    current: Session | None

    @property
    def user(self) -> Session | None:
        """The session if someone is signed in, else None."""
        return self.current if self.current is not None and self.current.signed_in else None

    def ensure(self) -> Session:
        """The session, made now (anonymous) if the browser has none."""
        if self.current is None:
            self.current = self.store.new()
        return self.current

    def sign_in(self, user_id: UserId, address: str, *, generation: int = 0) -> Session:
        self.current = self.store.sign_in(self.current, user_id, address, generation=generation)
        return self.current

    def sign_out(self) -> None:
        if self.current is not None:
            self.store.drop(self.current)
        self.current = None

    def issue_csrf(self) -> str:
        return self.store.issue_csrf(self.ensure())


def slot_of(scope: Mapping[str, Any]) -> SessionSlot:
    """The request's SessionSlot. Raises RuntimeError if the middleware is missing."""
    slot = scope.get(SCOPE_KEY)
    if not isinstance(slot, SessionSlot):
        raise RuntimeError("SessionMiddleware is not installed in front of this route")
    return slot

"""Domains, users and aliases in the ISPmail tables.

Functions take an open AsyncConnection; the caller owns the transaction, so a password
change can update the hash and the key slot in one commit. Addresses are compared
lower-cased, as Postfix and Dovecot do for the domain and, in the ISPmail queries, for
the whole address.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import (
    AliasExists,
    DatabaseConflict,
    DomainExists,
    UnknownDomain,
    UnknownUser,
    UserError,
    UserExists,
)

MAX_ALIAS_DEPTH = 8


@dataclass(frozen=True)
class User:
    """A row of virtual_users."""

    id: UserId
    email: str
    domain_id: int
    password_hash: str
    quota: int
    crypt: int

    def __repr__(self) -> str:
        return f"User(id={self.id}, email={self.email!r}, crypt={self.crypt})"


@dataclass(frozen=True)
class Alias:
    id: int
    source: str
    destination: str


def normalize_address(address: str) -> str:
    address = address.strip()
    local, _at, domain = address.rpartition("@")
    if address.count("@") != 1 or not local or not domain or any(c.isspace() for c in address):
        raise UserError(f"{address!r} is not an e-mail address (local@domain)")
    return address.lower()


def fold_address(address: str) -> str:
    """The form `find_user` compares with: stripped and lower-cased, not validated.

    Anything keyed by a login address (the login throttle) folds it the same way, so
    two spellings that reach one user share one key.
    """
    return address.strip().lower()


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1].lower()


async def add_domain(conn: AsyncConnection, name: str) -> int:
    name = name.strip().lower()
    if not name or "@" in name or " " in name:
        raise UserError(f"{name!r} is not a domain name")
    try:
        result = await conn.execute(t.virtual_domains.insert().values(name=name))
    except DatabaseConflict as exc:
        raise DomainExists(f"domain {name} exists already") from exc
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def list_domains(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(select(t.virtual_domains.c.name).order_by("name"))
    return [row.name for row in rows]


async def domain_id(conn: AsyncConnection, name: str) -> int:
    row = (
        await conn.execute(
            select(t.virtual_domains.c.id).where(
                func.lower(t.virtual_domains.c.name) == name.lower()
            )
        )
    ).first()
    if row is None:
        raise UnknownDomain(f"domain {name} does not exist; add it with `cryptmail domain add`")
    return int(row.id)


async def add_user(
    conn: AsyncConnection, email: str, password_hash: str, crypt: int = 0, quota: int = 0
) -> User:
    email = normalize_address(email)
    if crypt not in (0, 2):
        raise UserError("crypt must be 0 (new mail stays plain) or 2 (new mail is sealed)")
    dom = await domain_id(conn, domain_of(email))
    try:
        result = await conn.execute(
            t.virtual_users.insert().values(
                domain_id=dom, email=email, password=password_hash, crypt=crypt, quota=quota
            )
        )
    except DatabaseConflict as exc:
        raise UserExists(f"user {email} exists already") from exc
    uid = UserId(int(result.inserted_primary_key[0]))  # type: ignore[index]
    return User(uid, email, dom, password_hash, quota, crypt)


def _user(row: object) -> User:
    return User(
        UserId(int(row.id)),  # type: ignore[attr-defined]
        str(row.email),  # type: ignore[attr-defined]
        int(row.domain_id),  # type: ignore[attr-defined]
        str(row.password),  # type: ignore[attr-defined]
        int(row.quota),  # type: ignore[attr-defined]
        int(row.crypt),  # type: ignore[attr-defined]
    )


async def find_user(conn: AsyncConnection, email: str) -> User | None:
    row = (
        await conn.execute(
            select(t.virtual_users).where(
                func.lower(t.virtual_users.c.email) == fold_address(email)
            )
        )
    ).first()
    return _user(row) if row is not None else None


async def get_user(conn: AsyncConnection, email: str) -> User:
    user = await find_user(conn, email)
    if user is None:
        raise UnknownUser(f"user {fold_address(email)} does not exist")
    return user


async def get_user_by_id(conn: AsyncConnection, user_id: UserId) -> User:
    row = (
        await conn.execute(select(t.virtual_users).where(t.virtual_users.c.id == user_id))
    ).first()
    if row is None:
        raise UnknownUser(f"user id {user_id} does not exist")
    return _user(row)


async def list_users(conn: AsyncConnection) -> list[User]:
    rows = await conn.execute(select(t.virtual_users).order_by(t.virtual_users.c.email))
    return [_user(row) for row in rows]


async def set_crypt(conn: AsyncConnection, user_id: UserId, crypt: int) -> None:
    if crypt not in (0, 2):
        raise UserError("crypt must be 0 (new mail stays plain) or 2 (new mail is sealed)")
    await conn.execute(
        update(t.virtual_users).where(t.virtual_users.c.id == user_id).values(crypt=crypt)
    )


async def set_password_hash(conn: AsyncConnection, user_id: UserId, password_hash: str) -> None:
    await conn.execute(
        update(t.virtual_users)
        .where(t.virtual_users.c.id == user_id)
        .values(password=password_hash)
    )


async def set_quota(conn: AsyncConnection, user_id: UserId, quota: int) -> None:
    await conn.execute(
        update(t.virtual_users).where(t.virtual_users.c.id == user_id).values(quota=quota)
    )


async def add_alias(conn: AsyncConnection, source: str, destination: str) -> Alias:
    """Add `source` -> `destination`. `@domain` as source is a catch-all for that domain."""
    source = source.strip().lower()
    destination = normalize_address(destination)
    if not source.startswith("@"):
        source = normalize_address(source)
    elif len(source) < 2 or source.count("@") != 1:
        raise UserError(f"{source!r} is neither an address nor @domain (a catch-all)")
    dom = await domain_id(conn, domain_of(source))
    existing = (
        await conn.execute(
            select(t.virtual_aliases.c.id).where(
                t.virtual_aliases.c.source == source,
                t.virtual_aliases.c.destination == destination,
            )
        )
    ).first()
    if existing is not None:
        raise AliasExists(f"alias {source} -> {destination} exists already")
    result = await conn.execute(
        t.virtual_aliases.insert().values(domain_id=dom, source=source, destination=destination)
    )
    return Alias(int(result.inserted_primary_key[0]), source, destination)  # type: ignore[index]


async def remove_alias(conn: AsyncConnection, source: str, destination: str) -> None:
    result = await conn.execute(
        t.virtual_aliases.delete().where(
            t.virtual_aliases.c.source == source.strip().lower(),
            t.virtual_aliases.c.destination == destination.strip().lower(),
        )
    )
    if result.rowcount == 0:
        raise UserError(f"no alias {source} -> {destination}")


async def list_aliases(conn: AsyncConnection) -> list[Alias]:
    rows = await conn.execute(
        select(t.virtual_aliases).order_by(t.virtual_aliases.c.source, t.virtual_aliases.c.id)
    )
    return [Alias(int(r.id), str(r.source), str(r.destination)) for r in rows]


# Built once: LMTP runs these for every RCPT, and building and keying a SQLAlchemy
# statement costs several times what the database takes to answer it. Equality, not an
# expanding IN: SQLAlchemy renders an expanding parameter anew at every execution.
_ALIAS_TARGETS = select(t.virtual_aliases.c.destination).where(
    t.virtual_aliases.c.source == bindparam("source")
)
# The user of an address and whether an alias has that address as its source, in one
# statement: a plain mailbox (the usual RCPT) then costs no alias query of its own.
_ALIASED = exists().where(t.virtual_aliases.c.source == bindparam("email")).label("aliased")
_USER_BY_EMAIL = select(t.virtual_users, _ALIASED).where(
    t.virtual_users.c.email == bindparam("email")
)
_USER_BY_LOWER_EMAIL = select(t.virtual_users, _ALIASED).where(
    func.lower(t.virtual_users.c.email) == bindparam("email")
)


def _alias_targets(conn: Connection, source: str) -> list[str]:
    rows = conn.execute(_ALIAS_TARGETS, {"source": source})
    return [str(r.destination).lower() for r in rows]


def _find_user_sync(conn: Connection, address: str) -> tuple[User | None, bool]:
    """The user of `address` (lower-case), and whether an alias has it as its source
    (True when no user has it: the caller asks for the aliases then)."""
    # Exact match first: it uses the email index. Rows an admin typed in mixed case
    # still match through lower(), which scans, so only misses pay for it.
    row = conn.execute(_USER_BY_EMAIL, {"email": address}).first()
    if row is None:
        row = conn.execute(_USER_BY_LOWER_EMAIL, {"email": address}).first()
    if row is None:
        return None, True
    return _user(row), bool(row.aliased)


def _without_detail(address: str, delimiters: str) -> str:
    local, _, domain = address.rpartition("@")
    cuts = [i for i in (local.find(d) for d in delimiters) if i > 0]
    return f"{local[: min(cuts)]}@{domain}" if cuts else address


def resolve_recipient_sync(conn: Connection, address: str, delimiters: str = "") -> list[User]:
    """`resolve_recipient` inside a synchronous transaction (see `run_transaction`)."""
    address = address.strip().lower()
    found: dict[UserId, User] = {}
    seen: set[str] = set()
    pending = [address]
    for _depth in range(MAX_ALIAS_DEPTH):
        if not pending:
            break
        next_round: list[str] = []
        for target in pending:
            if target in seen or "@" not in target:
                continue
            seen.add(target)
            user, aliased = _find_user_sync(conn, target)
            explicit = _alias_targets(conn, target) if aliased else []
            if explicit:
                # The alias wins over a user of the same address, as in Postfix; the user
                # keeps a copy only if the alias lists the address itself.
                if user is not None and target in explicit:
                    found.setdefault(user.id, user)
                next_round.extend(d for d in explicit if d != target)
            elif user is not None:
                found.setdefault(user.id, user)
            elif (base := _without_detail(target, delimiters)) != target:
                # Postfix's order with recipient_delimiter: user+tag@, user@, then @domain.
                next_round.append(base)
            else:
                next_round.extend(_alias_targets(conn, "@" + domain_of(target)))
        pending = next_round
    return list(found.values())


async def resolve_recipient(
    conn: AsyncConnection, address: str, delimiters: str = ""
) -> list[User]:
    """The mailbox users that mail to `address` reaches, as Postfix's ISPmail maps do.

    An exact alias wins; otherwise an existing user gets it; otherwise a catch-all
    `@domain` alias. Aliases may point to aliases (up to MAX_ALIAS_DEPTH) and to several
    destinations; each user appears once. An unknown address gives [].
    """
    return await conn.run_sync(resolve_recipient_sync, address, delimiters)

"""The ISPmail directory: domains, users, aliases and how Postfix's maps resolve them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import create_engine, run_transaction, upgrade
from cryptmail.db import tables as t
from cryptmail.db._engine import _sync_engine
from cryptmail.errors import (
    AliasExists,
    DomainExists,
    UnknownDomain,
    UnknownUser,
    UserError,
    UserExists,
)
from cryptmail.users import (
    add_alias,
    add_domain,
    add_user,
    find_user,
    get_user,
    list_aliases,
    list_domains,
    list_users,
    normalize_address,
    remove_alias,
    resolve_recipient,
    resolve_recipient_sync,
    set_crypt,
    set_quota,
)

HASH = "{PLAIN}not used here"


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[AsyncConnection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'directory.db'}")
    await upgrade(engine)
    async with engine.begin() as connection:
        for domain in ("example.org", "example.net"):
            await add_domain(connection, domain)
        for email in ("alice@example.org", "bob@example.org", "carol@example.net"):
            await add_user(connection, email, HASH, crypt=2)
        yield connection
    await engine.dispose()


async def resolved(conn: AsyncConnection, address: str) -> list[str]:
    return sorted(u.email for u in await resolve_recipient(conn, address))


async def test_domains(conn: AsyncConnection) -> None:
    await add_domain(conn, " Example.COM ")
    assert await list_domains(conn) == ["example.com", "example.net", "example.org"]
    with pytest.raises(DomainExists):
        await add_domain(conn, "EXAMPLE.org")
    for bad in ("", "a b.org", "x@example.org"):
        with pytest.raises(UserError):
            await add_domain(conn, bad)


async def test_users(conn: AsyncConnection) -> None:
    user = await get_user(conn, " ALICE@Example.org ")
    assert user.email == "alice@example.org" and user.crypt == 2
    assert HASH not in repr(user)
    assert await find_user(conn, "nobody@example.org") is None
    with pytest.raises(UnknownUser):
        await get_user(conn, "nobody@example.org")
    with pytest.raises(UserExists):
        await add_user(conn, "Alice@example.org", HASH)
    with pytest.raises(UnknownDomain):
        await add_user(conn, "dave@example.com", HASH)
    with pytest.raises(UserError):
        await add_user(conn, "dave@example.org", HASH, crypt=1)
    await set_crypt(conn, user.id, 0)
    await set_quota(conn, user.id, 1 << 30)
    changed = await get_user(conn, "alice@example.org")
    assert (changed.crypt, changed.quota) == (0, 1 << 30)
    assert [u.email for u in await list_users(conn)] == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.net",
    ]


@pytest.mark.parametrize(
    "bad", ["alice", "@example.org", "alice@", "a@b@example.org", "al ice@example.org", ""]
)
async def test_addresses_must_have_both_parts(conn: AsyncConnection, bad: str) -> None:
    with pytest.raises(UserError):
        normalize_address(bad)
    with pytest.raises(UserError):
        await add_user(conn, bad, HASH)


async def test_alias_add_list_remove(conn: AsyncConnection) -> None:
    alias = await add_alias(conn, "Postmaster@Example.org", "Alice@Example.org")
    assert (alias.source, alias.destination) == ("postmaster@example.org", "alice@example.org")
    await add_alias(conn, "postmaster@example.org", "bob@example.org")
    with pytest.raises(AliasExists):
        await add_alias(conn, "postmaster@example.org", "ALICE@example.org")
    with pytest.raises(UnknownDomain):
        await add_alias(conn, "info@example.com", "alice@example.org")
    for source in ("example.org", "", "a@", "@", "a@b@example.org"):
        with pytest.raises(UserError):
            await add_alias(conn, source, "alice@example.org")
    assert [(a.source, a.destination) for a in await list_aliases(conn)] == [
        ("postmaster@example.org", "alice@example.org"),
        ("postmaster@example.org", "bob@example.org"),
    ]
    await remove_alias(conn, "POSTMASTER@example.org", "Alice@example.org")
    with pytest.raises(UserError):
        await remove_alias(conn, "postmaster@example.org", "alice@example.org")
    assert [a.destination for a in await list_aliases(conn)] == ["bob@example.org"]


async def test_user_and_unknown_address(conn: AsyncConnection) -> None:
    assert await resolved(conn, "Alice@Example.ORG") == ["alice@example.org"]
    assert await resolved(conn, "nobody@example.org") == []
    assert await resolved(conn, "alice@example.com") == []


async def test_alias_with_several_destinations(conn: AsyncConnection) -> None:
    await add_alias(conn, "team@example.org", "alice@example.org")
    await add_alias(conn, "team@example.org", "bob@example.org")
    await add_alias(conn, "team@example.org", "carol@example.net")
    await add_alias(conn, "team@example.org", "outside@elsewhere.test")
    assert await resolved(conn, "team@example.org") == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.net",
    ]


async def test_alias_chains_and_loops(conn: AsyncConnection) -> None:
    await add_alias(conn, "sales@example.org", "team@example.org")
    await add_alias(conn, "team@example.org", "bob@example.org")
    await add_alias(conn, "team@example.org", "sales@example.org")  # a loop back
    assert await resolved(conn, "sales@example.org") == ["bob@example.org"]
    await add_alias(conn, "ping@example.org", "pong@example.org")
    await add_alias(conn, "pong@example.org", "ping@example.org")
    assert await resolved(conn, "ping@example.org") == []


async def test_each_user_once(conn: AsyncConnection) -> None:
    await add_alias(conn, "a@example.org", "alice@example.org")
    await add_alias(conn, "a@example.org", "b@example.org")
    await add_alias(conn, "b@example.org", "alice@example.org")
    assert [u.email for u in await resolve_recipient(conn, "a@example.org")] == [
        "alice@example.org"
    ]


async def test_catch_all_only_for_addresses_nobody_has(conn: AsyncConnection) -> None:
    await add_alias(conn, "@example.org", "alice@example.org")
    await add_alias(conn, "info@example.org", "bob@example.org")
    assert await resolved(conn, "random@example.org") == ["alice@example.org"]
    assert await resolved(conn, "bob@example.org") == ["bob@example.org"]
    assert await resolved(conn, "info@example.org") == ["bob@example.org"]
    assert await resolved(conn, "random@example.net") == []


async def test_an_alias_of_a_user_address_redirects_it(conn: AsyncConnection) -> None:
    """As in Postfix's virtual_alias_maps: an alias on a user's address wins, and the
    user keeps a copy only when listed among the destinations."""
    await add_alias(conn, "alice@example.org", "bob@example.org")
    assert await resolved(conn, "alice@example.org") == ["bob@example.org"]
    await add_alias(conn, "alice@example.org", "alice@example.org")
    assert await resolved(conn, "alice@example.org") == ["alice@example.org", "bob@example.org"]


async def test_resolve_recipient_sync_in_a_transaction_of_its_own(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'lookup.db'}")
    await upgrade(engine)
    try:
        async with engine.begin() as connection:
            await add_domain(connection, "example.org")
            await add_user(connection, "alice@example.org", HASH)
            # A row an admin typed by hand, in mixed case, as the guide's SQL allows.
            await connection.execute(
                t.virtual_users.insert().values(
                    domain_id=1, email="Dave@Example.org", password=HASH, crypt=0, quota=0
                )
            )
            await add_alias(connection, "team@example.org", "dave@example.org")

        async def lookup(address: str) -> list[str]:
            users = await run_transaction(engine, lambda c: resolve_recipient_sync(c, address))
            return [u.email for u in users]

        assert await lookup("ALICE@example.org") == ["alice@example.org"]
        assert await lookup("team@example.org") == ["Dave@Example.org"]
        assert await lookup("nobody@example.org") == []
    finally:
        await engine.dispose()


async def test_a_plain_mailbox_costs_one_statement_and_an_alias_is_still_seen(
    tmp_path: Path,
) -> None:
    """The user and whether an alias has the address come in one SELECT; the alias query
    runs only when one does (or no user has the address), so an alias an admin adds with
    SQL counts at the next lookup: nothing is cached."""
    engine = create_engine(f"sqlite:///{tmp_path / 'lookup.db'}")
    await upgrade(engine)
    statements: list[str] = []

    def note(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    try:
        async with engine.begin() as connection:
            await add_domain(connection, "example.org")
            await add_user(connection, "alice@example.org", HASH)
            await add_user(connection, "bob@example.org", HASH)
        sync = _sync_engine(engine)
        assert sync is not None
        event.listen(sync, "before_cursor_execute", note)

        async def lookup(address: str) -> list[str]:
            statements.clear()
            users = await run_transaction(engine, lambda c: resolve_recipient_sync(c, address))
            return [u.email for u in users]

        assert await lookup("alice@example.org") == ["alice@example.org"]
        assert len(statements) == 1
        async with engine.begin() as connection:  # as the guide's SQL would
            await connection.execute(
                t.virtual_aliases.insert().values(
                    domain_id=1, source="alice@example.org", destination="bob@example.org"
                )
            )
        assert await lookup("alice@example.org") == ["bob@example.org"]
        assert await lookup("nobody@example.org") == []
    finally:
        await engine.dispose()

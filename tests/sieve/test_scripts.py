"""Users' Sieve scripts: sealed rows, one active at most, limits, and nothing changed by
a refused request."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId, create_engine, upgrade
from cryptmail.db import tables as t
from cryptmail.errors import (
    ObjectTampered,
    ScriptActive,
    ScriptExists,
    ScriptNameInvalid,
    ScriptNotFound,
    ScriptQuotaExceeded,
)
from cryptmail.sieve import (
    ScriptLimits,
    check_name,
    delete_script,
    get_script,
    have_space,
    list_scripts,
    load_active_script,
    put_script,
    read_active_script,
    rename_script,
    set_active,
)
from cryptmail.users import add_domain, add_user

LIMITS = ScriptLimits(max_script_size=4096, max_scripts=3)
SECRET_WORDS = 'if header :contains "subject" "zebra-lasagne" { fileinto "Hidden-Folder"; }\n'


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
        await add_user(conn, "alice@example.org", "{PLAIN}x")
        await add_user(conn, "bob@example.org", "{PLAIN}x")
    yield engine
    await engine.dispose()


ALICE = UserId(1)
BOB = UserId(2)


async def test_put_get_list_round_trip(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "vacation", SECRET_WORDS, LIMITS)
    await put_script(engine, ALICE, "Ünïcode ✓", "keep;\n", LIMITS)
    assert await get_script(engine, ALICE, "vacation") == SECRET_WORDS
    listed = await list_scripts(engine, ALICE)
    assert [(s.name, s.active, s.size) for s in listed] == [
        ("vacation", False, len(SECRET_WORDS)),
        ("Ünïcode ✓", False, len("keep;\n")),
    ]
    assert await list_scripts(engine, BOB) == []
    with pytest.raises(ScriptNotFound):
        await get_script(engine, BOB, "vacation")


async def test_replace_keeps_the_active_flag(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "main", "keep;\n", LIMITS)
    await set_active(engine, ALICE, "main")
    await put_script(engine, ALICE, "main", "discard;\n", LIMITS)
    assert await load_active_script(engine, ALICE) == "discard;\n"
    assert [s.active for s in await list_scripts(engine, ALICE)] == [True]


async def test_the_active_row_is_read_sealed_and_its_digest_names_each_write(
    engine: AsyncEngine,
) -> None:
    """Delivery keeps compiled scripts by digest: every write (even of the same text),
    a rename, another script made active give a new digest; nothing else does."""
    assert await read_active_script(engine, ALICE) is None
    await put_script(engine, ALICE, "a", SECRET_WORDS, LIMITS)
    await set_active(engine, ALICE, "a")
    first = await read_active_script(engine, ALICE)
    assert first is not None and first.open() == SECRET_WORDS
    assert b"zebra-lasagne" not in first.body_sealed
    assert "zebra" not in repr(first)
    again = await read_active_script(engine, ALICE)
    assert again is not None and again.digest == first.digest
    digests = [first.digest]
    for change in (
        put_script(engine, ALICE, "a", SECRET_WORDS, LIMITS),  # the same text, sealed anew
        rename_script(engine, ALICE, "a", "b"),
        put_script(engine, ALICE, "c", SECRET_WORDS, LIMITS),  # not active: no change
        set_active(engine, ALICE, "c"),
    ):
        await change
        found = await read_active_script(engine, ALICE)
        assert found is not None and found.open() == SECRET_WORDS
        digests.append(found.digest)
    assert digests[3] == digests[2]
    assert len(set(digests)) == 4
    assert await read_active_script(engine, BOB) is None


async def test_one_active_at_most(engine: AsyncEngine) -> None:
    assert await load_active_script(engine, ALICE) is None
    for name in ("a", "b"):
        await put_script(engine, ALICE, name, f"# {name}\nkeep;\n", LIMITS)
    await set_active(engine, ALICE, "a")
    await set_active(engine, ALICE, "b")
    assert {s.name: s.active for s in await list_scripts(engine, ALICE)} == {
        "a": False,
        "b": True,
    }
    assert await load_active_script(engine, ALICE) == "# b\nkeep;\n"
    await set_active(engine, ALICE, "")
    assert await load_active_script(engine, ALICE) is None
    with pytest.raises(ScriptNotFound):
        await set_active(engine, ALICE, "nope")


async def test_concurrent_set_active_leaves_one(engine: AsyncEngine) -> None:
    names = [f"s{i}" for i in range(3)]
    for name in names:
        await put_script(engine, ALICE, name, "keep;\n", LIMITS)
    await asyncio.gather(*(set_active(engine, ALICE, n) for n in names * 3))
    assert sum(s.active for s in await list_scripts(engine, ALICE)) == 1


async def test_delete_refuses_the_active_script(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "main", "keep;\n", LIMITS)
    await set_active(engine, ALICE, "main")
    with pytest.raises(ScriptActive):
        await delete_script(engine, ALICE, "main")
    assert await get_script(engine, ALICE, "main") == "keep;\n"
    await set_active(engine, ALICE, "")
    await delete_script(engine, ALICE, "main")
    with pytest.raises(ScriptNotFound):
        await delete_script(engine, ALICE, "main")


async def test_rename(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "old", SECRET_WORDS, LIMITS)
    await put_script(engine, ALICE, "other", "keep;\n", LIMITS)
    await set_active(engine, ALICE, "old")
    with pytest.raises(ScriptExists):
        await rename_script(engine, ALICE, "old", "other")
    with pytest.raises(ScriptNotFound):
        await rename_script(engine, ALICE, "missing", "new")
    await rename_script(engine, ALICE, "old", "new")
    assert await get_script(engine, ALICE, "new") == SECRET_WORDS
    assert await load_active_script(engine, ALICE) == SECRET_WORDS
    with pytest.raises(ScriptNotFound):
        await get_script(engine, ALICE, "old")


async def test_limits(engine: AsyncEngine) -> None:
    with pytest.raises(ScriptQuotaExceeded) as too_big:
        await put_script(engine, ALICE, "big", "#" * 4097, LIMITS)
    assert too_big.value.limit == "MAXSIZE"
    for name in ("a", "b", "c"):
        await put_script(engine, ALICE, name, "keep;\n", LIMITS)
    with pytest.raises(ScriptQuotaExceeded) as too_many:
        await put_script(engine, ALICE, "d", "keep;\n", LIMITS)
    assert too_many.value.limit == "MAXSCRIPTS"
    await put_script(engine, ALICE, "a", "discard;\n", LIMITS)  # a replacement fits
    await have_space(engine, ALICE, "a", 4096, LIMITS)
    with pytest.raises(ScriptQuotaExceeded):
        await have_space(engine, ALICE, "d", 10, LIMITS)
    with pytest.raises(ScriptQuotaExceeded):
        await have_space(engine, ALICE, "a", 4097, LIMITS)
    assert len(await list_scripts(engine, ALICE)) == 3


@pytest.mark.parametrize("name", ["", "a\x00b", "tab\there", "line\u2028sep", "x" * 129])
def test_bad_names(name: str) -> None:
    with pytest.raises(ScriptNameInvalid):
        check_name(name)


def test_names_are_nfc() -> None:
    assert check_name("e\u0301") == "\u00e9"


def _dump(directory: Path) -> tuple[bytes, bytes]:
    """Every byte of the database files, and the SQL text of a dump."""
    files = [p for p in directory.iterdir() if p.name.startswith("db.sqlite")]
    raw = b"".join(p.read_bytes() for p in files)
    connection = sqlite3.connect(directory / "db.sqlite")
    try:
        dump = "\n".join(connection.iterdump()).encode()
    finally:
        connection.close()
    return raw, dump


async def test_a_dump_reveals_no_name_or_text(engine: AsyncEngine, tmp_path: Path) -> None:
    await put_script(engine, ALICE, "zebra-lasagne-name", SECRET_WORDS, LIMITS)
    await rename_script(engine, ALICE, "zebra-lasagne-name", "okapi-risotto-name")
    await engine.dispose()
    raw, dump = _dump(tmp_path)
    for data in (raw, dump):
        for marker in (b"zebra-lasagne", b"okapi-risotto", b"Hidden-Folder"):
            assert marker not in data


async def _swap(engine: AsyncEngine, column: str, a: int, b: int) -> None:
    s = t.cm_sieve_scripts
    async with engine.begin() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(select(s.c.id, s.c[column]).where(s.c.id.in_((a, b))))
        }
        await conn.execute(update(s).where(s.c.id == a).values({column: rows[b][1]}))
        await conn.execute(update(s).where(s.c.id == b).values({column: rows[a][1]}))


async def test_a_text_moved_to_another_row_fails(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "one", SECRET_WORDS, LIMITS)
    await put_script(engine, BOB, "two", "keep;\n", LIMITS)
    await set_active(engine, BOB, "two")
    await _swap(engine, "body_sealed", 1, 2)
    with pytest.raises(ObjectTampered):
        await load_active_script(engine, BOB)
    with pytest.raises(ObjectTampered):
        await get_script(engine, ALICE, "one")


async def test_a_name_moved_to_another_row_fails(engine: AsyncEngine) -> None:
    await put_script(engine, ALICE, "one", "keep;\n", LIMITS)
    await put_script(engine, ALICE, "two", "keep;\n", LIMITS)
    await _swap(engine, "name_sealed", 1, 2)
    with pytest.raises(ObjectTampered):
        await list_scripts(engine, ALICE)

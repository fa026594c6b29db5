"""Users' Sieve scripts on every database, under parallel ManageSieve requests of one
user: SETACTIVE of different scripts at once leaves one active, and PUTSCRIPT of new
names at once stops at the script limit."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from cryptmail.db import tables as t
from cryptmail.errors import ScriptQuotaExceeded
from cryptmail.sieve import ScriptLimits, list_scripts, put_script, set_active
from cryptmail.users import add_user
from store.conftest import StoreRig

SCRIPT = "keep;\n"


async def test_parallel_setactive_leaves_one_active(store_rig: StoreRig) -> None:
    async with store_rig.engine.begin() as conn:
        user = (await add_user(conn, "bob@example.org", "{PLAIN}x")).id
    names = [f"s{n}" for n in range(8)]
    for name in names:
        await put_script(store_rig.engine, user, name, SCRIPT, ScriptLimits())
    for round_ in range(5):
        await asyncio.gather(*(set_active(store_rig.engine, user, name) for name in names))
        active = [s.name for s in await list_scripts(store_rig.engine, user) if s.active]
        assert len(active) == 1, (round_, active)


async def test_parallel_puts_stop_at_the_limit(store_rig: StoreRig) -> None:
    async with store_rig.engine.begin() as conn:
        user = (await add_user(conn, "bob@example.org", "{PLAIN}x")).id
    limits = ScriptLimits(max_scripts=3)

    async def put(name: str) -> bool:
        try:
            await put_script(store_rig.engine, user, name, SCRIPT, limits)
        except ScriptQuotaExceeded:
            return False
        return True

    for round_ in range(5):
        stored = await asyncio.gather(*(put(f"r{round_}-{n}") for n in range(8)))
        async with store_rig.engine.begin() as conn:
            held = await conn.scalar(select(func.count()).select_from(t.cm_sieve_scripts))
            await conn.execute(t.cm_sieve_scripts.delete())
        assert (stored.count(True), held) == (3, 3), (round_, stored)

"""The lazy `sqlalchemy.ext.asyncio` of the LMTP worker: the same names as SQLAlchemy's
own package, the engine without the ORM, and the ORM still there when asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import sqlalchemy.ext.asyncio as real

from cryptmail.serve._lean_sqlalchemy import EXPORTS, defer_async_orm


def test_exports_are_the_real_packages_names() -> None:
    """A SQLAlchemy upgrade that adds, drops or moves a name fails here."""
    names = {
        name: value.__module__.rpartition(".")[2]
        for name, value in vars(real).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert EXPORTS == names


def test_an_imported_package_stays() -> None:
    assert defer_async_orm() is False
    assert sys.modules["sqlalchemy.ext.asyncio"] is real


_PROBE = """
import asyncio, sys
from cryptmail.serve._lean_sqlalchemy import defer_async_orm

assert defer_async_orm() is True
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
import sqlalchemy.ext.asyncio.engine as engine_module

assert AsyncEngine is engine_module.AsyncEngine
assert "sqlalchemy.orm" not in sys.modules

async def main() -> None:
    engine = create_async_engine(sys.argv[1])
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (41), (1)"))
        total = (await conn.execute(text("SELECT sum(n) FROM t"))).scalar_one()
    await engine.dispose()
    assert total == 42, total

asyncio.run(main())
assert "sqlalchemy.orm" not in sys.modules
try:
    from sqlalchemy.ext.asyncio import NoSuchName  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("an unknown name was found")
from sqlalchemy.ext.asyncio import AsyncSession
import sqlalchemy.ext.asyncio.session as session_module

assert AsyncSession is session_module.AsyncSession
assert "sqlalchemy.orm" in sys.modules
print("ok")
"""


def test_the_engine_runs_without_the_orm_which_loads_when_asked(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROBE), url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

"""SQLAlchemy's asyncio extension without its ORM half, for the LMTP worker process.

`sqlalchemy/ext/asyncio/__init__.py` re-exports `AsyncSession` and friends, so the first
`from sqlalchemy.ext.asyncio import AsyncEngine` imports `sqlalchemy.orm` too: 41
modules and 6 MiB of every worker's 48 (bench/memory.py), for sessions cryptmail never
uses (it runs Core statements on `AsyncEngine` connections). `defer_async_orm` puts in
its place the same package with the same names, each imported from its submodule on
first use (PEP 562). The engine, results and errors are SQLAlchemy's own objects: one
DB layer, loaded in smaller steps. `tests/serve/test_lean_sqlalchemy.py` compares
`EXPORTS` with the real package, so an upgrade that moves a name fails there.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "sqlalchemy.ext.asyncio"
EXPORTS: dict[str, str] = {
    "AsyncAttrs": "session",
    "AsyncConnection": "engine",
    "AsyncEngine": "engine",
    "AsyncMappingResult": "result",
    "AsyncResult": "result",
    "AsyncScalarResult": "result",
    "AsyncSession": "session",
    "AsyncSessionTransaction": "session",
    "AsyncTransaction": "engine",
    "AsyncTupleResult": "result",
    "async_engine_from_config": "engine",
    "async_object_session": "session",
    "async_scoped_session": "scoping",
    "async_session": "session",
    "async_sessionmaker": "session",
    "close_all_sessions": "session",
    "create_async_engine": "engine",
    "create_async_pool_from_url": "engine",
}
"""Each name the package's `__init__` exports, and the submodule it comes from."""


def _export(name: str) -> Any:
    submodule = EXPORTS.get(name)
    # Plain import statements: each loads only its submodule (`session` pulls the ORM).
    if submodule == "engine":
        import sqlalchemy.ext.asyncio.engine as found
    elif submodule == "result":
        import sqlalchemy.ext.asyncio.result as found  # type: ignore[no-redef]
    elif submodule == "scoping":
        import sqlalchemy.ext.asyncio.scoping as found  # type: ignore[no-redef]
    elif submodule == "session":
        import sqlalchemy.ext.asyncio.session as found  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
    value = getattr(found, name)
    setattr(sys.modules[PACKAGE], name, value)
    return value


def defer_async_orm() -> bool:
    """Install the lazy `sqlalchemy.ext.asyncio`, before anything imports it; return
    False (and change nothing) if it is already imported: the real one then stays."""
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec("sqlalchemy.ext.asyncio")  # imports sqlalchemy.ext
    if spec is None:
        raise ImportError(f"{PACKAGE} is not installed")
    package: ModuleType = importlib.util.module_from_spec(spec)  # __path__ set, not run
    package.__getattr__ = _export  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package
    setattr(sys.modules["sqlalchemy.ext"], "asyncio", package)  # noqa: B010
    return True

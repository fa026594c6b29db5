"""The database's errors become ours where they arise: in hooks on each engine.

`handle_error` sees every DBAPI error of a statement, a transaction's begin or end, a
fetch, or a connect; it returns our error (SQLAlchemy then raises it, chained from the
driver's). `do_connect` wraps the driver's connect, because asyncpg raises its own and
OS errors there (a refused connection is a bare ConnectionRefusedError), which
`handle_error` never sees. Both hooks are dialect events: they cost nothing until
something fails, unlike connection events (see `_engine._begin`).

The classes: a transaction the database rolled back to resolve a conflict (a deadlock
victim, a serialization failure) is TransactionAborted, which `run_transaction` may run
again; a driver that cannot connect, lost its connection or waited too long for a lock
is DatabaseUnavailable (transient: the protocols answer "try again"; TransactionAborted
is one too); a unique or foreign-key constraint is DatabaseConflict; anything else is
DatabaseError. Messages name the driver's error type and code, never the SQL text or
its parameters, which hold password hashes and sealed key slots.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import Dialect, ExceptionContext

from cryptmail.errors import (
    DatabaseConflict,
    DatabaseError,
    DatabaseUnavailable,
    TransactionAborted,
)

_UNREACHABLE_ADVICE = (
    "check database.url and that the database server is running and reachable, then try again"
)

# sqlite3's OperationalError covers both a busy file and a missing table: the error
# name tells them apart. These are the ones that go away by themselves or by fixing
# the file's place, not the schema or the SQL.
_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
    "SQLITE_READONLY",
)

# SQLSTATE classes and codes (PostgreSQL, and MySQL's where it sets one) of transient
# failures: connection exceptions, serialization failures and deadlocks, lock not
# available, admin shutdown, too many connections.
_SQLSTATE_UNAVAILABLE_CLASSES = ("08", "40", "53", "57")
_SQLSTATE_UNAVAILABLE = ("55P03",)

# The database rolled the whole transaction back to let another one through: 40001
# serialization failure (PostgreSQL; MySQL's SQLSTATE for a deadlock), 40P01 deadlock
# detected (PostgreSQL), MySQL/MariaDB error 1213 (ER_LOCK_DEADLOCK; its drivers carry
# no SQLSTATE). A lock wait timeout (1205, 55P03) is not one: on MySQL it ends only the
# statement, and waiting again is not what a retry should do. MySQL/MariaDB's 1305
# (SAVEPOINT does not exist) is one: a deadlock inside a savepoint (`begin_nested`)
# rolled the whole transaction back, and the rollback to the savepoint then finds none;
# SQLAlchemy reports that error, not the deadlock (parallel first deliveries to a user
# making its folders, on MariaDB).
_SQLSTATE_ABORTED = ("40001", "40P01")
_MYSQL_ABORTED = (1213, 1305)


def install_error_hooks(engine: Engine) -> None:
    """Translate `engine`'s driver errors (for an AsyncEngine: its `sync_engine`)."""
    event.listen(engine, "handle_error", _on_error, retval=True)
    event.listen(engine, "do_connect", _on_connect)


def translate(
    error: BaseException, wrapped: BaseException | None = None, *, disconnect: bool = False
) -> DatabaseError | DatabaseUnavailable | None:
    """Our error for a driver's `error` (with SQLAlchemy's `wrapped` one, if it made
    one), or None when it is no database error at all (a cancellation, a bug in a bind
    processor), which then goes on unchanged."""
    if isinstance(error, OSError):  # TimeoutError too: the socket failed, not the SQL
        return DatabaseUnavailable(
            f"the database did not answer ({_os_cause(error)}); {_UNREACHABLE_ADVICE}"
        )
    if not (isinstance(wrapped, exc.DBAPIError) or isinstance(error, sqlite3.Error)):
        return None
    cause = _cause(error)
    aborted = "" if disconnect else _aborted_code(error)
    if aborted:
        return TransactionAborted(
            f"the database rolled this transaction back to resolve a conflict with another "
            f"one ({cause}); running it again may succeed",
            code=aborted,
        )
    if disconnect or _is_transient(error, wrapped):
        if _sqlite_name(error).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return DatabaseUnavailable(
                f"the database stayed locked by another writer ({cause}); try again"
            )
        return DatabaseUnavailable(f"the database did not answer ({cause}); {_UNREACHABLE_ADVICE}")
    if isinstance(wrapped, exc.IntegrityError) or isinstance(error, sqlite3.IntegrityError):
        return DatabaseConflict(
            f"the database refused a write that conflicts with a stored row ({cause})"
        )
    return DatabaseError(
        f"the database refused the operation ({cause}); run with -v and check the "
        "database server's log"
    )


def _on_error(context: ExceptionContext) -> BaseException | None:
    # A failed pre-ping is how the pool finds a dead pooled connection and opens a new
    # one; an error of ours there would end that instead.
    if context.is_pre_ping:
        return None
    # SQLAlchemy's own probes (MySQL's has_table runs DESCRIBE and catches DBAPIError
    # 1146 to answer False) ask for no user error events per statement; this version
    # honours that only per connection, so we look at the statement's options too.
    execution = context.execution_context
    if execution is not None and execution.execution_options.get("skip_user_error_events"):
        return None
    return translate(
        context.original_exception,
        context.sqlalchemy_exception,
        disconnect=context.is_disconnect,
    )


def _on_connect(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.Error:
        raise  # handle_error translates it, with is_disconnect set by the dialect
    except Exception as error:
        # Whatever stops a connection (asyncpg's InvalidPasswordError, a refused or
        # timed-out socket) leaves the database unreachable for this process.
        raise (
            translate(error)
            or DatabaseUnavailable(
                f"the database did not answer ({_cause(error)}); {_UNREACHABLE_ADVICE}"
            )
        ) from error


def _is_transient(error: BaseException, wrapped: BaseException | None) -> bool:
    sqlite = _sqlite_name(error)
    if sqlite:
        return sqlite.startswith(_SQLITE_UNAVAILABLE)
    state = _sqlstate(error)
    if state:
        return state.startswith(_SQLSTATE_UNAVAILABLE_CLASSES) or state in _SQLSTATE_UNAVAILABLE
    # MySQL drivers and the rest: their OperationalError is the server or the link
    # failing (2003 cannot connect, 1205 lock wait timeout, 1213 deadlock), never bad SQL.
    return isinstance(wrapped, exc.OperationalError | exc.InterfaceError)


def _aborted_code(error: BaseException) -> str:
    """The code of a transaction the database aborted for another's sake, or ""."""
    state = _sqlstate(error)
    if state:
        return state if state in _SQLSTATE_ABORTED else ""
    number = _mysql_number(error)
    return str(number) if number in _MYSQL_ABORTED else ""


def _mysql_number(error: BaseException) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _sqlite_name(error: BaseException) -> str:
    for candidate in (error, error.__cause__, error.__context__):
        name = getattr(candidate, "sqlite_errorname", None)
        if isinstance(name, str):
            return name
    return ""


def _sqlstate(error: BaseException) -> str:
    for candidate in (error, error.__cause__, error.__context__):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return ""


def _class_name(error: BaseException) -> str:
    return type(error).__name__


def _cause(error: BaseException) -> str:
    """The driver's error type and code: no SQL, no parameters, no URL."""
    parts = [_class_name(error)]
    code = _sqlite_name(error) or _sqlstate(error)
    number = _mysql_number(error)
    if not code and number is not None:
        code = str(number)  # MySQL's error number
    if code:
        parts.append(code)
    return " ".join(parts)


def _os_cause(error: OSError) -> str:
    return f"{_class_name(error)}: {error.strerror}" if error.strerror else _class_name(error)

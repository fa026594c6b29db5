"""Fixtures that start real servers on 127.0.0.1 for the integration tests.

Session-wide: ``mariadb``, ``postgres`` (each a running server; ask it for a
fresh database with ``create_database()``), ``seaweedfs`` (an S3 gateway; make a
bucket per test), ``chromium_launch_kwargs``.
Per test: ``mariadb_database`` and ``postgres_database`` (a fresh database and
owner each), ``database_url`` (a fresh database on SQLite, MariaDB and PostgreSQL in
turn: the test runs once per backend), ``store_rig`` (the store's test rig on
``database_url``, upgraded, with example.org), ``postfix_factory`` (build a Postfix for
this test's domains and LMTP server; all are stopped when the test ends).

A server whose program is missing fails the test, so CI never skips by
accident; set ``CRYPTMAIL_ALLOW_SKIP=1`` on a machine without the servers to
skip instead. Any other start failure is an error either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store.conftest import StoreRig

from .servers import (
    BinaryMissing,
    Database,
    MariaDB,
    Postfix,
    Postgres,
    SeaweedFS,
    launch_kwargs,
)
from .servers._fixtures import Runner, start_or_skip, started_instances, unavailable
from .servers._process import log_tail

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_START_TIMES: list[tuple[str, float]] = []
_R = TypeVar("_R", bound=Runner)


def _started(server: Runner, name: str) -> None:
    """Start ``server`` (see ``start_or_skip``) and note the time it took for the summary."""
    _START_TIMES.append((name, start_or_skip(server)))


def _running(server: _R, name: str) -> Iterator[_R]:
    """The body of a fixture that starts ``server``, yields it and stops it at teardown."""
    _started(server, name)
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each server took to start, so slow starts show up in CI logs."""
    if not _START_TIMES:
        return
    by_name: dict[str, list[float]] = {}
    for name, seconds in _START_TIMES:
        by_name.setdefault(name, []).append(seconds)
    parts = [
        f"{name} {max(times):.2f} s"
        if len(times) == 1
        else f"{name} x{len(times)} (mean {sum(times) / len(times):.2f} s, max {max(times):.2f} s)"
        for name, times in by_name.items()
    ]
    terminalreporter.write_line("server start times: " + ", ".join(parts))


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server for the whole session; ``.database`` is a ready database."""
    yield from _running(MariaDB(), "MariaDB")


@pytest.fixture
def mariadb_database(mariadb: MariaDB) -> Database:
    """A fresh MariaDB database, owned by a fresh user with a password."""
    return mariadb.create_database()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session; ``.database`` is a ready database."""
    yield from _running(Postgres(), "PostgreSQL")


@pytest.fixture
def postgres_database(postgres: Postgres) -> Database:
    """A fresh PostgreSQL database, owned by a fresh role with a password."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend in turn (servers start on first use)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cryptmail.db'}"
    server = "mariadb_database" if request.param == "mariadb" else "postgres_database"
    database: Database = request.getfixturevalue(server)
    return str(database.url)


@pytest.fixture
async def store_rig(database_url: str, tmp_path: Path) -> AsyncIterator[StoreRig]:
    """tests/store's rig on `database_url`: schema upgraded, example.org added."""
    config = load_config(
        None, data_dir=str(tmp_path / "data"), **{"crypto.argon2.memory_kib": 19456}
    )
    engine = create_engine(database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    yield StoreRig(config, engine, LocalBlobStore(config.blob_path), config.data_path)
    # Its connections (and, on SQLite, their worker threads) go now, not at a later
    # collection on a closed loop.
    await engine.dispose()
    await engine.dispose()


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 gateway for the whole session; make a bucket per test."""
    yield from _running(SeaweedFS(), "SeaweedFS")


class PostfixFactory(Protocol):
    """Builds and starts a Postfix; see :class:`servers.Postfix` for the parameters."""

    def __call__(
        self,
        *,
        domains: Sequence[str],
        lmtp: str,
        smtp_port: int | None = None,
        aliases: Mapping[str, str] | None = None,
        mailboxes: Sequence[str] | None = None,
        hostname: str = "mx.cryptmail.test",
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> Postfix: ...


@pytest.fixture
def postfix_factory(request: pytest.FixtureRequest) -> Iterator[PostfixFactory]:
    """Start Postfix instances for this test; stop them all when it ends.

    If the test failed, each instance's log tail is printed at teardown.
    """

    def show_log_if_failed(instance: Postfix) -> None:
        reports = request.node.stash.get(_REPORTS, {}).values()
        if any(report.failed for report in reports) and instance.base_dir is not None:
            print(f"--- Postfix log ({instance.log_path}) ---\n{log_tail(instance.log_path, 60)}")

    with started_instances(
        Postfix,
        start=lambda instance: _started(instance, "Postfix"),
        before_stop=show_log_if_failed,
    ) as factory:
        yield factory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell that the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def chromium_launch_kwargs() -> dict[str, object]:
    """Keyword arguments for Playwright's ``chromium.launch()`` with Debian's Chromium."""
    try:
        return launch_kwargs()
    except BinaryMissing as exc:
        missing = exc
    unavailable(missing)

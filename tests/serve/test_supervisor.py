"""The supervisor: one set of shared parts for every listener, and one life for all."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.errors import ConfigError
from cryptmail.imap import ImapListener
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.serve import Addresses, Shared, make_listeners, run_server
from cryptmail.store import ChangeBus
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.web import WebServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "cryptmail.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"
        "[web]\nsecure_cookies = false\n"
    )
    return load_config(path)


@pytest.fixture
async def engine(config: Config) -> AsyncEngine:
    engine = create_engine(config.database_url)
    await upgrade(engine)
    return engine


def _shared(config: Config, engine: AsyncEngine) -> Shared:
    return Shared(
        config=config,
        engine=engine,
        blobs=LocalBlobStore(config.blob_path),
        bus=ChangeBus(),
        throttle=LoginThrottle(),
        accounts=UnlockedAccounts(engine, config.crypto),
    )


async def test_web_and_both_imap_listeners_share_one_throttle_and_one_key_cache(
    config: Config, engine: AsyncEngine
) -> None:
    """`cryptmail serve --web ... --imap ... --imaps ...` gives every listener the same
    LoginThrottle, so failures at the web form slow IMAP logins and the other way round,
    and the same UnlockedAccounts, so a password change on the web drops IMAP's cached
    credentials."""
    shared = _shared(config, engine)
    listeners = make_listeners(
        shared,
        Addresses(
            imap=f"127.0.0.1:{_free_port()}",
            imaps=f"127.0.0.1:{_free_port()}",
            web=f"127.0.0.1:{_free_port()}",
        ),
    )
    imaps = [listener for listener in listeners if isinstance(listener, ImapListener)]
    webs = [listener for listener in listeners if isinstance(listener, WebServer)]
    assert len(imaps) == 2 and len(webs) == 1 and len(listeners) == 3
    for listener in imaps:
        assert listener.context.throttle is shared.throttle
        assert listener.context.accounts is shared.accounts
        assert listener.context.bus is shared.bus
    assert webs[0].throttle is shared.throttle
    assert webs[0].accounts is shared.accounts
    await engine.dispose()


async def test_no_address_is_a_config_error(config: Config, engine: AsyncEngine) -> None:
    with pytest.raises(ConfigError, match="no listener"):
        make_listeners(_shared(config, engine), Addresses())
    with pytest.raises(ConfigError, match="not a Unix socket"):
        make_listeners(_shared(config, engine), Addresses(imap="unix:/tmp/imap.sock"))
    await engine.dispose()


async def test_a_listener_that_cannot_start_stops_the_others(
    config: Config, engine: AsyncEngine
) -> None:
    """The web listener comes up, IMAP cannot bind: `run_server` raises, and the web
    listener is stopped rather than left serving."""
    web_port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(OSError):
            await run_server(
                config,
                engine,
                Addresses(web=f"127.0.0.1:{web_port}", imap=f"127.0.0.1:{busy}"),
            )
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", web_port)
    await engine.dispose()


def test_the_worker_module_runs_without_being_imported_twice() -> None:
    """`python -m` of a module the package already imported runs it a second time (runpy
    warns on every worker start); the worker's entry module is named, not imported."""
    import subprocess
    import sys

    from cryptmail.serve._lmtp_workers import WORKER_MODULE

    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", WORKER_MODULE],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # No arguments: main() refuses them; what matters is that runpy did not warn.
    assert "RuntimeWarning" not in done.stderr, done.stderr
    assert "ValueError" in done.stderr


async def test_readiness_reports_a_blob_store_that_cannot_be_written(tmp_path: Path) -> None:
    from cryptmail.serve._supervisor import _blob_readiness
    from cryptmail.store.blobs import LocalBlobStore

    blobs = LocalBlobStore(tmp_path / "blobs")
    check = _blob_readiness(blobs)
    assert await check() == []
    (blobs.root / "tmp").rmdir()
    assert await check() == ["blob store"]

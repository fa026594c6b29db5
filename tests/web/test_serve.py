"""WebServer: uvicorn on a loopback port from start to stop, HTTP or HTTPS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import ConfigError
from cryptmail.keys import LoginThrottle
from cryptmail.web import WebServer
from web.conftest import make_config, self_signed_certificate


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _wait_until_up(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(**kwargs) as client:  # type: ignore[arg-type]
        for _ in range(200):
            try:
                return await client.get(url)
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


async def _serve_and_fetch(
    config: Config, engine: AsyncEngine, scheme: str, **client_kwargs: object
) -> httpx.Response:
    port = _free_port()
    server = WebServer(config, "127.0.0.1", port, engine=engine, throttle=LoginThrottle())
    await server.start()
    try:
        response = await _wait_until_up(f"{scheme}://127.0.0.1:{port}/sign-in", **client_kwargs)
    finally:
        await server.stop(15)
        await asyncio.wait_for(server.wait_closed(), 15)
    async with httpx.AsyncClient(**client_kwargs) as client:  # type: ignore[arg-type]
        with pytest.raises(httpx.ConnectError):  # stopped listening
            await client.get(f"{scheme}://127.0.0.1:{port}/")
    return response


async def test_plain_http_until_shutdown(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(tmp_path, **{"web.secure_cookies": False})
    response = await _serve_and_fetch(config, engine, "http")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["set-cookie"].startswith("cryptmail=")
    # The shared engine stays usable after the listener stopped.
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


async def test_https_with_configured_certificate(tmp_path: Path, engine: AsyncEngine) -> None:
    cert, key = self_signed_certificate(tmp_path)
    config = make_config(tmp_path, **{"web.tls_cert": str(cert), "web.tls_key": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    response = await _serve_and_fetch(config, engine, "https", verify=context)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["set-cookie"].startswith("__Host-cryptmail=")


async def test_certificate_without_key(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(tmp_path, **{"web.tls_cert": "/nonexistent.crt"})
    with pytest.raises(ConfigError, match="go together"):
        server = WebServer(
            config, "127.0.0.1", _free_port(), engine=engine, throttle=LoginThrottle()
        )
        await server.start()


async def test_unreadable_certificate(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(
        tmp_path,
        **{"web.tls_cert": str(tmp_path / "no.crt"), "web.tls_key": str(tmp_path / "no.key")},
    )
    with pytest.raises(ConfigError, match="did not start"):
        server = WebServer(
            config, "127.0.0.1", _free_port(), engine=engine, throttle=LoginThrottle()
        )
        await server.start()


async def test_address_in_use(tmp_path: Path, engine: AsyncEngine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="did not start"):
            server = WebServer(
                make_config(tmp_path), "127.0.0.1", port, engine=engine, throttle=LoginThrottle()
            )
            await server.start()

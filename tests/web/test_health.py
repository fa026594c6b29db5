"""`/healthz` and `/readyz`: no session needed, and `/readyz` says which part is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.web import create_app

from .conftest import CLIENT_IP


async def _client_for(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


async def test_healthz_answers_without_a_session(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers


async def test_readyz_with_the_database_up(client: httpx.AsyncClient) -> None:
    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready"}


async def test_readyz_names_what_the_server_reports_down(
    config: Config, engine: AsyncEngine
) -> None:
    down: list[str] = []

    async def readiness() -> list[str]:
        return list(down)

    app = create_app(config, engine=engine, readiness=readiness)
    async with app.router.lifespan_context(app):
        async for client in _client_for(app):
            assert (await client.get("/readyz")).status_code == 200
            down.append("blob store")
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json() == {"status": "not ready", "failing": ["blob store"]}


class _DatabaseDown:
    """An engine whose every connection fails, as when the database server is gone."""

    def connect(self) -> object:
        raise ConnectionRefusedError("the database does not answer")


async def test_readyz_names_the_database_when_it_does_not_answer(config: Config) -> None:
    app = create_app(config, engine=_DatabaseDown())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        async for client in _client_for(app):
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json() == {"status": "not ready", "failing": ["database"]}

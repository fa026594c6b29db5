"""openapi.yaml: served as written, matches the routes, and the app keeps to it
(schemathesis in-process over ASGI, plus real success answers checked against it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type stubs here
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from starlette.applications import Starlette
from starlette.routing import Route

from cryptmail.config import Config
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import LoginThrottle, NewAccount, create_user
from cryptmail.users import add_domain
from cryptmail.web import create_app
from cryptmail.web._openapi import openapi_text
from cryptmail.web._routes import ROUTES
from web.conftest import ALICE, PASSWORD, make_config, pw

DOCUMENT = yaml.safe_load(openapi_text())


def test_every_api_route_is_documented_and_nothing_else() -> None:
    routes = {
        (route.path, method.lower())
        for route in ROUTES
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert routes == documented


async def test_served_as_written(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.text == openapi_text()
    assert DOCUMENT["openapi"].startswith("3.")


async def test_success_answers_match_the_document(
    client: httpx.AsyncClient, alice: NewAccount
) -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    auth = (ALICE, PASSWORD)
    created = await client.post(
        "/api/v1/app-passwords", json={"address": ALICE, "password": PASSWORD, "name": "phone"}
    )
    listed = await client.get("/api/v1/app-passwords", auth=auth)
    revoked = await client.delete("/api/v1/app-passwords/phone", auth=auth)
    recovered = await client.post(
        "/api/v1/recover",
        json={"address": ALICE, "code": alice.recovery_code, "new": "a new passphrase"},
    )
    changed = await client.post(
        "/api/v1/password",
        json={"address": ALICE, "old": "a new passphrase", "new": "another passphrase"},
    )
    for path, method, response, status in [
        ("/api/v1/app-passwords", "POST", created, 201),
        ("/api/v1/app-passwords", "GET", listed, 200),
        ("/api/v1/app-passwords/{name}", "DELETE", revoked, 204),
        ("/api/v1/recover", "POST", recovered, 200),
        ("/api/v1/password", "POST", changed, 204),
    ]:
        assert response.status_code == status, (path, response.text)
        schema[path][method].validate_response(response)


# -- schemathesis -----------------------------------------------------------------------


async def _prepare(config: Config) -> None:
    engine = create_engine(config.database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    await create_user(engine, ALICE, pw(PASSWORD), config.crypto)
    await engine.dispose()


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """The app as `serve` makes it, its engine made in its lifespan (run by schemathesis)."""
    config = make_config(Path(tmp_path_factory.mktemp("api")))
    asyncio.run(_prepare(config))
    return create_app(config, throttle=LoginThrottle())


@pytest.fixture(scope="module")
def api_schema(api_app: Starlette) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.yaml", api_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_keeps_to_its_document(case: schemathesis.Case[Any]) -> None:
    # Random credentials are rightly refused, so "valid data is accepted" cannot hold.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])

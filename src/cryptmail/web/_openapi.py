"""The API's description, served as written in `openapi.yaml`."""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response


@cache
def openapi_text() -> str:
    return (resources.files("cryptmail.web") / "openapi.yaml").read_text("utf-8")


async def openapi_yaml(request: Request) -> Response:
    return Response(openapi_text(), media_type="application/yaml")

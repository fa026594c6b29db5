"""Every malformed API body is a 4xx: Python's int-length limit, broken UTF-8 and deep
nesting included (a 4,301-digit integer made json.loads raise a bare ValueError)."""

from __future__ import annotations

import httpx
import pytest

from web.conftest import RecordingThrottle

JSON = {"content-type": "application/json"}
HUGE = b"9" * 4301


@pytest.mark.parametrize(
    "body",
    [
        HUGE,
        b"-" + HUGE,
        b'{"address": ' + HUGE + b', "old": "x", "new": "y"}',
        b'{"address": "a@b", "old": "x", "new": "y", "n": [1, {"deep": ' + HUGE + b"}]}",
        b"[" * 30_000 + HUGE + b"]" * 30_000,
        b"[" * 32_000 + b"]" * 32_000,
        b'{"address": "a\xff@b", "old": "x", "new": "y"}',
        b'{"address": "a@b", "old": "\xc3\x28", "new": "y"}',
        b"\xef\xbb\xbf{}",
        b'{"address": NaN, "old": "x", "new": "y"}',
        b'{"address": 1e99999, "old": "x", "new": "y"}',
        b"\x00" * 10,
    ],
    ids=[
        "huge-int",
        "huge-negative",
        "huge-field",
        "huge-nested",
        "huge-in-deep-array",
        "deep-arrays",
        "bad-utf8",
        "bad-utf8-2",
        "bom",
        "nan",
        "inf",
        "nul",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/password", "/api/v1/recover", "/api/v1/app-passwords"])
async def test_bad_bodies_are_client_errors(
    client: httpx.AsyncClient, throttle: RecordingThrottle, body: bytes, path: str
) -> None:
    response = await client.post(path, content=body, headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("invalid_request", "authentication_failed")
    assert throttle.waits == []

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


@pytest.mark.parametrize("field", ["address", "old", "new", "code", "name", "password", "extra"])
async def test_a_huge_integer_in_any_field_is_a_client_error(
    client: httpx.AsyncClient, field: str
) -> None:
    """Issue 14: a JSON integer of 4,301+ digits anywhere in an API body was an HTTP 500."""
    strings = {"address": "a@example.org", "old": "x", "new": "y", "code": "c", "name": "n"}
    body = (
        b"{"
        + b", ".join(
            b'"%s": %s' % (k.encode(), HUGE if k == field else b'"%s"' % v.encode())
            for k, v in {**strings, "password": "p", "extra": "e"}.items()
        )
        + b"}"
    )
    for path in ("/api/v1/password", "/api/v1/recover", "/api/v1/app-passwords"):
        response = await client.post(path, content=body, headers=JSON)
        assert 400 <= response.status_code < 500, (path, response.text)
    response = await client.request(
        "DELETE", "/api/v1/app-passwords/phone", content=body, headers=JSON
    )
    assert 400 <= response.status_code < 500, response.text

"""What the JSON API reads: request bodies, Basic credentials, the admin token.

A body is a JSON object, or a URL-encoded form (what Roundcube's `httpapi` password
driver sends), with only the documented fields, each a string of bounded length. Any
other shape is an ApiError before a credential is looked at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from cryptmail.secret import SecretBytes

JSON_TYPE: Final = "application/json"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
BASIC_CHALLENGE: Final = 'Basic realm="cryptmail", charset="UTF-8"'


class ApiError(Exception):
    """An API answer other than success: status, a stable code and a sentence."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def auth_failed() -> ApiError:
    return ApiError(
        401,
        "authentication_failed",
        "The address, the password or the code is wrong.",
        {"www-authenticate": BASIC_CHALLENGE},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


@dataclass(frozen=True)
class Field:
    max_length: int
    required: bool = True


async def read_fields(request: Request, fields: Mapping[str, Field]) -> dict[str, str]:
    """The body's fields. Raises ApiError 415 for another media type, 400 for anything
    but an object of the documented string fields within their lengths."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if media_type == JSON_TYPE:
        raw = _json_object(body)
    elif media_type == FORM_TYPE:
        raw = _form_object(body, len(fields))
    else:
        raise ApiError(415, "unsupported_media_type", f"Send {JSON_TYPE} (or {FORM_TYPE}).")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r}.")
    values: dict[str, str] = {}
    for name, spec in fields.items():
        value = raw.get(name)
        if value is None:
            if spec.required:
                raise bad_request(f"The field {name!r} is missing.")
            continue
        if not isinstance(value, str):
            raise bad_request(f"The field {name!r} must be a string.")
        if not 1 <= len(value) <= spec.max_length:
            raise bad_request(f"The field {name!r} must be 1 to {spec.max_length} characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(f"The field {name!r} is not valid Unicode text.") from None
        values[name] = value
    return values


def _json_object(body: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, UnicodeDecodeError and the int-length limit
        # (an integer of 4,301 digits or more), which is not a JSONDecodeError.
        raise bad_request("The body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise bad_request("The body must be a JSON object.")
    return parsed


def _form_object(body: bytes, max_fields: int) -> dict[str, object]:
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=max_fields,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise bad_request("The body is not a valid URL-encoded form.") from None
    form: dict[str, object] = {}
    for name, value in pairs:
        if name in form:
            raise bad_request(f"The field {name!r} appears twice.")
        form[name] = value
    return form


def basic_credentials(request: Request) -> tuple[str, str]:
    """Address and password from `Authorization: Basic`. Raises ApiError 401."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise auth_failed()
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise auth_failed() from None
    address, colon, password = decoded.partition(":")
    if not colon or not address or not password or len(decoded) > 2048:
        raise auth_failed()
    return address, password


def bearer_matches(request: Request, token: SecretBytes | None) -> bool | None:
    """None without a Bearer header; else whether it is the admin token (constant time)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    if token is None:
        return False
    given = hashlib.sha256(value.strip().encode("utf-8", "replace")).digest()
    expected = hashlib.sha256(token.reveal()).digest()
    return hmac.compare_digest(given, expected)

"""Reading the fields of a submitted form, bounded and as text.

The CSRF middleware has already checked that the body is a URL-encoded form with a
valid token; the body-size middleware has bounded it.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import FormData
from starlette.requests import Request

MAX_FIELDS: Final = 16
MAX_TEXT: Final = 1024
"""Longest value of any field; a password's own ceiling is 1024 UTF-8 bytes."""


class BadInput(ValueError):
    """A field is missing, too long or not text; the page says so without detail."""


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=8 * MAX_TEXT)


def text(form: FormData, name: str, *, max_length: int = MAX_TEXT, required: bool = True) -> str:
    """The field `name` as text. Raises BadInput if it is missing (when required),
    longer than `max_length` characters, or not text."""
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > max_length or (required and not value):
        raise BadInput(name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(name) from None
    return value

"""The web pages name the password rule that was broken, not a list of all rules."""

from __future__ import annotations

import re

import httpx
import pytest

from cryptmail.keys import NewAccount

from .conftest import submit


@pytest.mark.parametrize(
    ("new", "says", "never"),
    [
        ("alice in wonderland", "before the @", "contain your address"),
        ("xx alice@example.org xx", "contains your address", "before the @"),
        ("1234567890", "most common passwords", "before the @"),
        ("short", "too short", "most common"),
    ],
)
async def test_recover_page_names_the_rule(
    client: httpx.AsyncClient, alice: NewAccount, new: str, says: str, never: str
) -> None:
    form = {
        "address": "alice@example.org",
        "code": alice.recovery_code or "",
        "new": new,
        "repeat": new,
    }
    response = await submit(client, "/forgot", form)
    assert response.status_code == 400
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
    assert found is not None
    assert says in found.group(1)
    assert never not in found.group(1)

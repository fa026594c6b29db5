"""Language from Accept-Language; English and German catalogs complete and in step."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import cryptmail.web
from cryptmail.keys import _events
from cryptmail.web._i18n import LANGUAGES, Catalogs, negotiate
from cryptmail.web._render import NOTICES

WEB = Path(cryptmail.web.__file__).parent
CATALOGS = Catalogs().messages


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("", "en"),
        ("de", "de"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-GB,en;q=0.9,de;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", "de"),
        ("fr, it", "en"),
        ("en;q=0.1, de;q=0.9", "de"),
        ("de;q=0, en", "en"),
        ("DE-at", "de"),
        ("*", "en"),
        ("de;q=nonsense, en;q=0.5", "en"),
        (";;;,,,=", "en"),
        ("xx," * 1000 + "de", "en"),  # only the first ranges count
    ],
)
def test_negotiate(header: str | None, lang: str) -> None:
    assert negotiate(header) == lang


def test_catalogs_have_the_same_keys() -> None:
    assert set(LANGUAGES) == {"en", "de"}
    assert set(CATALOGS["en"]) == set(CATALOGS["de"])
    for lang, messages in CATALOGS.items():
        for key, text in messages.items():
            assert text.strip(), f"{lang}: {key} is empty"


def _template_keys() -> set[str]:
    keys: set[str] = set()
    for template in (WEB / "templates").glob("*.html"):
        keys.update(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", template.read_text()))
    for module in WEB.glob("*.py"):
        keys.update(re.findall(r'"((?:error|notice)\.[a-z_]+)"', module.read_text()))
    # Prefixes completed at run time ("event." ~ kind) are checked below.
    return {k for k in keys if not k.endswith((".", "_", ".html"))}


def test_every_used_key_exists() -> None:
    used = _template_keys()
    used |= {f"notice.{n}" for n in NOTICES}
    used |= {f"code.heading_{reason}" for reason in ("recovered", "renewed", "created")}
    events = [v for k, v in vars(_events).items() if k.isupper() and isinstance(v, str)]
    used |= {f"event.{e}" for e in events if e != "keep_events"}
    assert len(used) > 60
    missing = sorted(used - set(CATALOGS["en"]))
    assert not missing


def test_format_fields_match() -> None:
    for key, text in CATALOGS["en"].items():
        assert re.findall(r"\{(\w+)\}", text) == re.findall(r"\{(\w+)\}", CATALOGS["de"][key]), key


async def test_page_in_german(client: httpx.AsyncClient) -> None:
    response = await client.get("/forgot", headers={"accept-language": "de-DE,de;q=0.9"})
    assert response.headers["content-language"] == "de"
    assert "Accept-Language" in response.headers["vary"]
    assert '<html lang="de">' in response.text
    assert "Ohne dein Passwort und deinen Wiederherstellungscode" in response.text


async def test_page_in_english_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/forgot", headers={"accept-language": "fr"})
    assert response.headers["content-language"] == "en"
    assert "Without your password and your recovery code nobody" in response.text


async def test_error_messages_are_translated(client: httpx.AsyncClient) -> None:
    response = await client.post("/sign-in", headers={"accept-language": "de"}, data={})
    assert "Dieses Formular ist abgelaufen" in response.text

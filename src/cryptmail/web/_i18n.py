"""Message catalogs (`locales/<lang>.toml`) and the choice of language.

The language comes from the browser's Accept-Language, best quality first; English
when nothing matches. Catalogs are TOML tables flattened to dotted keys
(`[sign_in] title = ...` is `sign_in.title`); values are plain text, formatted with
`str.format` fields such as `{count}`, and escaped by the templates like any value.
A test checks that every catalog has the same keys and every key a template uses.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

LANGUAGES: Final = ("en", "de")
DEFAULT: Final = "en"
_MAX_RANGES = 32


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, key + "."))
        elif isinstance(value, str):
            flat[key] = value
        else:
            raise ValueError(f"locales: {key} must be text, not {type(value).__name__}")
    return flat


def load_catalog(lang: str) -> dict[str, str]:
    """The flattened catalog of `lang`, read from the package."""
    text = (resources.files("cryptmail.web") / "locales" / f"{lang}.toml").read_text("utf-8")
    return _flatten(tomllib.loads(text))


def negotiate(accept_language: str | None) -> str:
    """The best of LANGUAGES for an Accept-Language header (RFC 9110 12.5.4)."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")[:_MAX_RANGES]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if quality > 0:
            ranked.append((-quality, position, primary))
    for _quality, _position, primary in sorted(ranked):
        if primary in LANGUAGES:
            return primary
        if primary == "*":
            return DEFAULT
    return DEFAULT


@dataclass(frozen=True)
class Translator:
    """`t(key, **fields)` in one language, falling back to English, then to the key."""

    lang: str
    messages: Mapping[str, str]
    fallback: Mapping[str, str]

    def __call__(self, key: str, **fields: object) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format(**fields) if fields else text


class Catalogs:
    """Every catalog, loaded once."""

    def __init__(self) -> None:
        self.messages = {lang: load_catalog(lang) for lang in LANGUAGES}

    def translator(self, lang: str) -> Translator:
        return Translator(lang, self.messages[lang], self.messages[DEFAULT])

"""The config loader and docs/configuration.md agree, and bad files fail clearly."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from cryptmail import config as config_module
from cryptmail.config import Config, load_config
from cryptmail.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _field_docs() -> dict[str, str]:
    """Attribute docstrings per class, read from the source (Python keeps none)."""
    tree = ast.parse(Path(config_module.__file__).read_text())
    docs: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for first, second in zip(body, body[1:], strict=False):
            if (
                isinstance(first, ast.AnnAssign)
                and isinstance(first.target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
            ):
                docs[f"{node.name}.{first.target.id}"] = " ".join(str(second.value.value).split())
    return docs


def _leaves(cls: type, prefix: str = "") -> dict[str, tuple[object, str]]:
    out: dict[str, tuple[object, str]] = {}
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(type(value), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (value, cls.__name__)
    return out


def _doc_table() -> dict[str, tuple[str, str]]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `([a-z_.0-9]+)` \| `(.*?)` \| (.*) \|$", text, re.M)
    return {key: (default, meaning) for key, default, meaning in rows}


def test_every_field_is_documented_with_its_default_and_docstring() -> None:
    docs = _field_docs()
    table = _doc_table()
    leaves = _leaves(Config)
    assert set(table) == set(leaves)
    for key, (default, cls_name) in leaves.items():
        doc_default, meaning = table[key]
        expected = (
            "true" if default is True else "false" if default is False else repr(default)
        ).replace("'", '"')
        assert doc_default == expected, key
        docstring = docs[f"{cls_name}.{key.rsplit('.', 1)[-1]}"]
        assert meaning.startswith(docstring.split(". Examples")[0].split(" Examples")[0][:40]), key


def test_defaults_load_without_a_file() -> None:
    config = load_config(None)
    assert config.crypto.curve == "x25519"
    assert config.database_url.startswith("sqlite:///")


def test_unknown_key_names_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[crypto]\ncurvee = 'x25519'\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key crypto\.curvee"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[crypto]\ncurve = 'p999'\n", "crypto.curve"),
        ("[crypto.argon2]\nmemory_kib = 'lots'\n", "must be an integer"),
        ("[crypto.argon2]\nmemory_kib = 1024\n", "OWASP"),
        ("[web]\nsecure_cookies = 1\n", "true or false"),
        ("[blobs]\nbackend = 's3'\n", "s3_endpoint"),
        ("[imap]\ntls_cert = 'a.pem'\n", "go together"),
        ("[auth]\ncache_ttl_s = -1\n", "auth.cache_ttl_s must be >= 0"),
        ("[auth]\ncache_max_users = 0\n", "auth.cache_max_users >= 1"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_values_fail_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")

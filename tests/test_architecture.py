"""Dependencies point one way: protocols -> store -> keys -> users -> db, crypto at the
bottom; protocol code never imports crypto; every package's __all__ is sorted."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cryptmail"

# Which cryptmail packages each package may import (besides itself and the shared
# top-level modules config, errors, secret, concurrency, utf7).
ALLOWED: dict[str, set[str]] = {
    "crypto": set(),
    "db": set(),
    "users": {"db"},
    "keys": {"crypto", "db", "users"},
    "store": {"crypto", "db", "users", "keys"},
    "delivery": {"store", "keys", "users", "db"},
    "imap": {"store", "keys", "users", "db"},
    "web": {"keys", "users", "db"},
    "cli": {"crypto", "db", "users", "keys", "store", "delivery", "imap", "web"},
}
SHARED = {"config", "errors", "secret", "concurrency", "utf7", "__init__"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cryptmail"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("cryptmail"))
    return names


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    bad: list[str] = []
    for path in (SRC / package).rglob("*.py"):
        for module in _imports(path):
            target = _package_of(module)
            if target in SHARED or target == package:
                continue
            if target not in ALLOWED[package]:
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, "\n".join(bad)


def test_shared_modules_import_no_layer() -> None:
    for name in ("config", "errors", "secret", "concurrency", "utf7"):
        for module in _imports(SRC / f"{name}.py"):
            assert _package_of(module) in SHARED, f"{name}.py imports {module}"


@pytest.mark.parametrize(
    "package",
    sorted(
        p.parent.relative_to(SRC.parent).as_posix().replace("/", ".")
        for p in SRC.rglob("__init__.py")
        if "migrations" not in p.parts
    ),
)
def test_all_is_sorted_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if names is None:
        return
    assert list(names) == sorted(names, key=_isort_key), f"{package}.__all__ is not sorted"
    for name in names:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"

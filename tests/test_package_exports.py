"""Packages with lazy exports (PEP 562): the table `__getattr__` loads from (`_EXPORTS`)
says what the `if TYPE_CHECKING:` imports say, every name of `__all__` is in both, and
each resolves to the object of the module that defines it. A name added to the imports
and `__all__` but not to `_EXPORTS` (an easy slip in a merge) fails here."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _lazy_packages() -> list[str]:
    found = []
    for path in sorted((SRC / "cryptmail").rglob("__init__.py")):
        if "_EXPORTS" in path.read_text():
            found.append(".".join(path.parent.relative_to(SRC).parts))
    return found


def _type_checking_imports(package: str) -> dict[str, str]:
    """{name: module it is imported from} under the package's `if TYPE_CHECKING:`."""
    path = SRC / package.replace(".", "/") / "__init__.py"
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    found[alias.asname or alias.name] = f"{statement.module}.{alias.name}"
    return found


LAZY = _lazy_packages()


def test_the_lazy_packages_are_found() -> None:
    assert {"cryptmail.store", "cryptmail.keys", "cryptmail.users"} <= set(LAZY)


@pytest.mark.parametrize("package", LAZY)
def test_exports_match_the_type_checking_imports(package: str) -> None:
    module = importlib.import_module(package)
    imported = _type_checking_imports(package)
    assert sorted(imported) == sorted(module.__all__)
    table = {name: f"{package}.{sub}" for sub, names in module._EXPORTS.items() for name in names}
    for name, source in imported.items():
        owner, _, attr = source.rpartition(".")
        if owner.startswith(f"{package}._"):  # one of the package's own modules
            assert table.get(name) == owner, f"{package}._EXPORTS: {name} is in {owner}"
    assert set(table) <= set(imported), f"{package}._EXPORTS names what it does not import"


@pytest.mark.parametrize("package", LAZY)
def test_each_name_is_the_defining_modules_object(package: str) -> None:
    module = importlib.import_module(package)
    for name, source in _type_checking_imports(package).items():
        owner, _, attr = source.rpartition(".")
        try:
            expected = getattr(importlib.import_module(owner), attr)
        except AttributeError:  # `from pkg import _mod as name`: the module itself
            expected = importlib.import_module(source)
        assert getattr(module, name) is expected, f"{package}.{name}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import cryptmail.store as store

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = store.no_such_name

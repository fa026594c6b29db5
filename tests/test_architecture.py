"""Dependencies point one way: cli -> serve -> protocols -> store -> keys -> users -> db,
crypto at the bottom; protocol code never imports crypto; every package's __all__ is sorted."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cryptmail"

# Which cryptmail packages each package may import (besides itself and the shared
# top-level modules config, errors, secret, concurrency, utf7, sockets, logs, tls,
# listening, plainauth).
ALLOWED: dict[str, set[str]] = {
    "crypto": set(),
    "metrics": set(),
    "hashing": set(),
    "db": set(),
    "users": {"db"},
    "keys": {"crypto", "db", "users"},
    "store": {"crypto", "db", "users", "keys"},
    "sieve": {"crypto", "db", "users", "keys"},
    "delivery": {"store", "keys", "users", "db", "sieve"},
    "imap": {"store", "keys", "users", "db"},
    "web": {"keys", "users", "db"},
    "sasl": {"keys", "users", "db"},
    "pop3": {"store", "keys", "users", "db"},
    "managesieve": {"sieve", "keys", "users", "db"},
    "serve": {
        "db",
        "users",
        "keys",
        "store",
        "delivery",
        "imap",
        "web",
        "sasl",
        "pop3",
        "sieve",
        "managesieve",
    },
    "cli": {
        "crypto",
        "db",
        "users",
        "keys",
        "store",
        "delivery",
        "imap",
        "web",
        "sasl",
        "pop3",
        "sieve",
        "managesieve",
        "serve",
    },
}
SHARED = {
    "config", "errors", "secret", "concurrency", "utf7", "sockets", "logs", "tls", "listening",
    "plainauth", "tasks", "__init__",
    "hashing",  # a package at the bottom: where Argon2 runs (this process or a child)
    "metrics",  # a package at the bottom: every layer reports its events to it
}  # fmt: skip


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


# -- Rooms inside imap, and no import circles ---------------------------------------------
# An import under `if TYPE_CHECKING:` is not an edge: it never runs. A function-local
# import is one: it runs, and hides a circle rather than removing it.

_TOP = SRC.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(_TOP).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_MODULES: dict[str, Path] = {
    _module_name(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(module: str) -> set[str]:
    """The cryptmail modules `module` imports when it runs (`from pkg import _mod` names
    the submodule, `from pkg import name` the package)."""
    path = _MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in _MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in _MODULES}


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return circles


def test_no_import_circles() -> None:
    circles = _components({m: _runtime_imports(m) - {m} for m in _MODULES})
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("cryptmail.imap.wire", ("cryptmail.imap.message", "cryptmail.imap.server")),
        ("cryptmail.imap.message", ("cryptmail.imap.server",)),
    ],
)
def test_imap_rooms_point_down(room: str, forbidden: tuple[str, ...]) -> None:
    """wire <- message <- server: the pure rooms never reach up (nor through the
    `cryptmail.imap` package, which re-exports the server)."""
    bad: list[str] = []
    for path in (SRC.parent / room.replace(".", "/")).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                bad.append(f"{path.relative_to(SRC)} uses a relative import")
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            for name in names:
                if name == "cryptmail.imap" or name.startswith(forbidden):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_circle_finder_sees_a_circle() -> None:
    """The circle test can fail: the old imap layout (session -> append handler ->
    session) is a circle under the same rules."""
    tree = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _components(tree) == [["a", "b", "c"]]


# -- Private modules stay inside their package, and no import hides from the graph -------


def _private_cross_imports(package: str, tree: ast.AST) -> list[str]:
    """Imports in a module of top-level `package` that reach into another package's
    private part: any path component starting with `_` below `cryptmail.Q`, Q != package
    (`from cryptmail.Q import _mod` names the submodule `_mod` too)."""
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            paths = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            paths = [alias.name for alias in node.names]
        else:
            continue
        for path in paths:
            parts = path.split(".")
            if parts[0] != "cryptmail" or len(parts) < 3:
                continue
            target = parts[1]
            if target != package and any(p.startswith("_") for p in parts[2:]):
                bad.append(path)
    return bad


def test_no_private_import_across_packages() -> None:
    bad: list[str] = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        package = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for name in _private_cross_imports(package, ast.parse(path.read_text())):
            bad.append(f"{relative} imports {name}")
    assert not bad, "\n".join(sorted(bad))


def test_private_import_finder_sees_one() -> None:
    """The test above can fail: a web module reaching into keys' private module is caught,
    in both import forms, while its own private modules and keys' public face are not."""
    snippet = ast.parse(
        "from cryptmail.keys._slots import SlotRow\n"
        "from cryptmail.keys import _kdf\n"
        "import cryptmail.store._ids\n"
        "from cryptmail.web._csrf import check\n"
        "from cryptmail.keys import unlock_account\n"
    )
    assert _private_cross_imports("web", snippet) == [
        "cryptmail.keys._slots.SlotRow",
        "cryptmail.keys._kdf",
        "cryptmail.store._ids",
    ]


_DYNAMIC_IMPORTERS = {"import_module", "__import__", "find_spec"}
_REGISTRY = "cli/_registry.py"


def _dynamic_imports(tree: ast.AST) -> list[str]:
    """Calls of importlib.import_module, __import__ or (importlib.util.)find_spec whose
    module name is ours or cannot be told (not a string constant): an import that the
    import-graph tests above cannot see."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else ""
        )
        if name not in _DYNAMIC_IMPORTERS:
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            module = first.value
            if module.split(".")[0] != "cryptmail" and not module.startswith("."):
                continue  # another library's module: no edge of ours hidden
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_dynamic_import_of_our_modules() -> None:
    bad: list[str] = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.as_posix() == _REGISTRY:
            continue
        bad.extend(f"{relative} {call}" for call in _dynamic_imports(ast.parse(path.read_text())))
    assert not bad, "\n".join(sorted(bad))


def test_dynamic_import_finder_sees_one() -> None:
    """The test above can fail: each spelling naming our modules is caught, and so is a
    name it cannot read; another library's module is not."""
    snippet = ast.parse(
        "import importlib, importlib.util\n"
        "importlib.import_module('cryptmail.keys._slots')\n"
        "__import__('cryptmail.store')\n"
        "importlib.util.find_spec('cryptmail.cli._user')\n"
        "importlib.import_module(name)\n"
        "importlib.import_module('._x', package=__name__)\n"
        "importlib.import_module('json')\n"
        "importlib.util.find_spec('uvloop')\n"
    )
    assert [call.split(":")[0] for call in _dynamic_imports(snippet)] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert _dynamic_imports(ast.parse((SRC / _REGISTRY).read_text())), (
        "cli/_registry.py, the one exception, has dynamic imports to exempt"
    )

"""The constants in crypto/_labels.py are spelled exactly as in docs/security.md.

The doc's "Constants" section has a `| name | value |` table; every constant of
_labels.py must be in it with the same value, and every row must name a constant the
code has (a few derived sizes live beside the code that uses them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cryptmail.crypto import MAX_HEADER_SIZE
from cryptmail.crypto import _labels as labels
from cryptmail.crypto._ecies import WRAPPED_SIZE
from cryptmail.crypto._slots import _RECORD_SIZE
from cryptmail.crypto._stream import _MAX_CHUNK_LOG2, _MIN_CHUNK_LOG2

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|\s*`(?P<value>[^`]+)`\s*\|\s*$")

# Sizes the doc lists that are not in _labels.py, with where the code keeps them.
DERIVED: dict[str, int] = {
    "MAX_HEADER_SIZE": MAX_HEADER_SIZE,
    "WRAPPED_SIZE": WRAPPED_SIZE,
    "SLOT_RECORD_SIZE": _RECORD_SIZE,
    "BLOB_MIN_CHUNK_LOG2": _MIN_CHUNK_LOG2,
    "BLOB_MAX_CHUNK_LOG2": _MAX_CHUNK_LOG2,
}


def doc_constants() -> dict[str, object]:
    text = DOC.read_text("utf-8")
    section = text.split("\n## Constants\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, object] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            name = match["name"]
            assert name not in table, f"{name} listed twice"
            table[name] = ast.literal_eval(match["value"])
    return table


def code_constants() -> dict[str, object]:
    found: dict[str, object] = {}
    for name in dir(labels):
        if not name.isupper():
            continue
        value = getattr(labels, name)
        if isinstance(value, dict):
            found.update({f'{name}["{key}"]': item for key, item in value.items()})
        elif isinstance(value, bytes):
            found[name] = value.decode("ascii")
        else:
            found[name] = value
    return found


def test_the_doc_has_a_constants_table() -> None:
    assert len(doc_constants()) >= 25


def test_every_code_constant_is_in_the_doc_with_its_value() -> None:
    doc = doc_constants()
    code = code_constants()
    missing = sorted(set(code) - set(doc))
    assert not missing, f"constants missing from docs/security.md: {missing}"
    wrong = {name: (code[name], doc[name]) for name in code if doc[name] != code[name]}
    assert not wrong, f"code value, doc value: {wrong}"


def test_every_doc_constant_exists_in_the_code() -> None:
    doc = doc_constants()
    code = {**code_constants(), **DERIVED}
    unknown = sorted(set(doc) - set(code))
    assert not unknown, f"docs/security.md lists constants the code does not have: {unknown}"
    for name, value in DERIVED.items():
        assert doc[name] == value, name


@pytest.mark.parametrize(
    "label",
    [value for name, value in vars(labels).items() if name.startswith("LABEL_")],
)
def test_labels_are_versioned_and_distinct(label: bytes) -> None:
    # v2: the labels the re-keying formats (slot version 2, data key wrap) brought; v3:
    # those of the label separation (field version 3, blob version 3, sealed box 3).
    assert label.startswith((b"cryptmail/v1/", b"cryptmail/v2/", b"cryptmail/v3/"))
    all_labels = [v for n, v in vars(labels).items() if n.startswith("LABEL_")]
    assert all_labels.count(label) == 1


def test_the_doc_formulas_use_the_labels() -> None:
    text = DOC.read_text("utf-8")
    for name, value in vars(labels).items():
        if name.startswith("LABEL_"):
            assert f'"{value.decode()}"' in text.split("\n## Constants\n")[0], name

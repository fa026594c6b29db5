"""The vector sets under tests/vectors/ are byte-identical to their MANIFEST.sha256.

The Dovecot vectors were made by the real Dovecot and are copied here once; editing one
by accident would make every test that reads it prove nothing, so every file is pinned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

VECTOR_SETS = sorted(path.parent for path in Path(__file__).parent.glob("*/MANIFEST.sha256"))


def _manifest(root: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (root / "MANIFEST.sha256").read_text("ascii").splitlines():
        digest, name = line.split(None, 1)
        # sha256sum writes "  " before the name, or " *" in binary mode.
        name = name.lstrip("*").removeprefix("./")
        assert name not in entries, f"{name} listed twice"
        entries[name] = digest
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_dovecot_set_is_present() -> None:
    assert Path(__file__).parent / "dovecot-2.3" in VECTOR_SETS


@pytest.mark.parametrize("root", VECTOR_SETS, ids=lambda path: path.name)
def test_every_file_matches_the_manifest(root: Path) -> None:
    manifest = _manifest(root)
    assert manifest, "empty manifest"
    mismatched = [name for name, digest in manifest.items() if _sha256(root / name) != digest]
    assert mismatched == []


@pytest.mark.parametrize("root", VECTOR_SETS, ids=lambda path: path.name)
def test_no_file_outside_the_manifest(root: Path) -> None:
    manifest = _manifest(root)
    on_disk = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name != "MANIFEST.sha256"
    }
    assert on_disk == set(manifest)

"""Fixtures shared by the IMAP server's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server_rig import ImapRig, rig_pair


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[tuple[ImapRig, ImapRig]]:
    """The server under test and a reference, both without the background pass."""
    yield from rig_pair(tmp_path, **{"imap.fts_index": False})

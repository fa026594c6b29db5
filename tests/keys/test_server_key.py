"""The server key file: made once, mode 0600, read again, never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cryptmail.errors import ConfigError
from cryptmail.keys import _server_key, load_server_key


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test reads its files itself, not what an earlier test loaded.
    monkeypatch.setattr(_server_key, "_loaded", {})


def test_it_is_made_0600_with_32_random_bytes_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server.key"  # the data directory does not exist yet
    first = load_server_key(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600
    secret = path.read_bytes()
    assert len(secret) == 32
    assert [p.name for p in path.parent.iterdir()] == ["server.key"]  # no temp file left
    _server_key._loaded.clear()  # another process
    again = load_server_key(path)
    assert path.read_bytes() == secret
    assert again.delivery_tag_key() == first.delivery_tag_key()
    assert again.delivery_mac_key() == first.delivery_mac_key()
    assert first.delivery_mac_key() != first.delivery_tag_key()  # one key per purpose


def test_two_files_give_different_keys(tmp_path: Path) -> None:
    one = load_server_key(tmp_path / "one.key")
    two = load_server_key(tmp_path / "two.key")
    assert one.delivery_tag_key() != two.delivery_tag_key()


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_server_key(path)


def test_a_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not a server key"):
        load_server_key(path)


def test_a_key_made_concurrently_is_the_one_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "server.key"
    winner = os.urandom(32)
    real_link = os.link

    def link_after_another(src: str, dst: str) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, winner)
        os.close(fd)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_after_another)
    key = load_server_key(path)
    assert path.read_bytes() == winner
    assert key.delivery_tag_key() == _server_key.ServerKey(winner, path).delivery_tag_key()


def test_its_repr_shows_no_secret_and_it_does_not_pickle(tmp_path: Path) -> None:
    import pickle

    key = load_server_key(tmp_path / "server.key")
    secret = (tmp_path / "server.key").read_bytes()
    text = repr(key) + str(key)
    assert secret.hex() not in text and key.delivery_tag_key().hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)

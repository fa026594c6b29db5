"""Unix listening sockets (LMTP, SASL): mode 0660 and a configurable group, not 0666
(any local user could inject mail or try passwords)."""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import stat
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.errors import ConfigError
from cryptmail.sockets import bind_listener, socket_group_id, wait_readable


def _mode_and_group(path: Path) -> tuple[int, int]:
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    return stat.S_IMODE(info.st_mode), info.st_gid


def test_the_socket_is_0660_with_the_given_group(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    sock = bind_listener(f"unix:{path}", group=os.getgid())
    try:
        assert _mode_and_group(path) == (0o660, os.getgid())
    finally:
        sock.close()


def test_the_socket_is_0660_without_a_group(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    sock = bind_listener(f"unix:{path}")
    try:
        assert _mode_and_group(path)[0] == 0o660
    finally:
        sock.close()


def test_group_by_name_number_or_the_data_directory(tmp_path: Path) -> None:
    name = grp.getgrgid(os.getgid()).gr_name
    assert socket_group_id(name, tmp_path) == os.getgid()
    assert socket_group_id(str(os.getgid()), tmp_path) == os.getgid()
    assert socket_group_id("", tmp_path) == tmp_path.stat().st_gid
    assert socket_group_id("", tmp_path / "not-made-yet") is None
    with pytest.raises(ConfigError, match="lmtp.socket_group"):
        socket_group_id("no-such-group-cryptmail", tmp_path)


def test_the_setting_is_read_from_the_config() -> None:
    config = load_config(None, **{"lmtp.socket_group": "postfix"})
    assert config.lmtp.socket_group == "postfix"
    assert load_config(None).lmtp.socket_group == ""


def test_wait_readable_returns_when_a_connection_waits_and_leaves_it_unaccepted() -> None:
    async def check() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        with listener:
            waiting = asyncio.create_task(wait_readable(loop, listener))
            await asyncio.sleep(0.05)
            assert not waiting.done()  # nothing has connected yet
            client = socket.create_connection(listener.getsockname())
            with client:
                await asyncio.wait_for(waiting, 10)
                # Not accepted by the wait: the connection is still there to take.
                accepted, _ = listener.accept()
                accepted.close()

    asyncio.run(check())

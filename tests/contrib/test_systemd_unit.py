"""contrib/systemd/cryptmail.service: systemd itself reads it without a complaint, and it
keeps the hardening the docs promise."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "cryptmail.service"


def _settings() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_systemd_reads_the_unit_without_warnings(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants an executable that exists: stand the Python running the tests in.
    unit = tmp_path / "cryptmail.service"
    unit.write_text(UNIT.read_text().replace("/opt/cryptmail/.venv/bin/cryptmail", sys.executable))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warned about


def test_the_unit_runs_serve_unprivileged_and_confined() -> None:
    settings = _settings()
    assert settings["ExecStart"].endswith(" serve")
    assert settings["User"] == "cryptmail" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["ProtectHome"] == "yes"
    assert settings["LimitCORE"] == "0" and settings["UMask"] == "0077"
    assert settings["LimitMEMLOCK"] == "infinity"  # serve locks its memory against swap
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert settings["StateDirectoryMode"] == "0700"
    assert settings["KillSignal"] == "SIGTERM"


def test_the_unit_waits_for_ready_pings_the_watchdog_and_reloads_on_hup() -> None:
    settings = _settings()
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["StandardOutput"] == settings["StandardError"] == "journal"


def test_the_units_command_lines_start_reload_and_stop_serve(tmp_path: Path) -> None:
    """ExecStart (the binary replaced by this Python), with the unit's UMask and a real
    socket as $NOTIFY_SOCKET: READY=1; ExecReload as written: READY=1 again; KillSignal:
    STOPPING=1 and a clean exit within TimeoutStopSec; the files it made are private."""
    settings = _settings()
    argv = shlex.split(settings["ExecStart"])
    assert argv[0] == "/opt/cryptmail/.venv/bin/cryptmail"
    config = tmp_path / "cryptmail.toml"
    port = _free_port()
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[lmtp]\nlisten = "127.0.0.1:{port}"\n')
    argv = [sys.executable, "-m", "cryptmail", *argv[1:]]
    argv[argv.index("/etc/cryptmail/cryptmail.toml")] = str(config)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(120)
    umask = int(settings["UMask"], 8)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    process = subprocess.Popen(
        argv, env=env, stderr=subprocess.PIPE, preexec_fn=lambda: os.umask(umask)
    )
    try:
        assert _next_with(notify, "READY=1")
        reload = settings["ExecReload"].replace("$MAINPID", str(process.pid))
        subprocess.run(shlex.split(reload), check=True, timeout=30)
        assert "RELOADING=1" in _next_with(notify, "RELOADING=1")
        assert _next_with(notify, "READY=1")
        process.send_signal(getattr(signal, settings["KillSignal"]))
        assert _next_with(notify, "STOPPING=1")
        assert process.wait(int(settings["TimeoutStopSec"])) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
        notify.close()
    made = [tmp_path / "data", *(tmp_path / "data").rglob("*")]
    assert all(path.stat().st_mode & 0o077 == 0 for path in made if not path.is_socket())


def _next_with(sock: socket.socket, field: str) -> list[str]:
    for _ in range(100):
        got = sock.recv(4096).decode().split("\n")
        if field in got:
            return got
    raise AssertionError(f"no {field}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

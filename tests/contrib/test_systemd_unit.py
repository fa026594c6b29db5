"""contrib/systemd/cryptmail.service: systemd itself reads it without a complaint, and it
keeps the hardening the docs promise."""

from __future__ import annotations

import shutil
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

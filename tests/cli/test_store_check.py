"""`cryptmail store check`: what a crash leaves is reported; exit 1 only for real problems."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cli.conftest import Alice, Cli
from cryptmail.crypto import plain_header
from cryptmail.store import new_blob_id


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


def _orphan(cli: Cli, age_s: float) -> str:
    """A well-formed blob no row names, as a kill between blob and row leaves it."""
    hexid = new_blob_id().hex()
    path = cli.data_dir / "blobs" / hexid[:2] / hexid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plain_header() + b"Subject: orphan\r\n\r\nx\r\n")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return hexid


def test_a_clean_store(alice: Alice) -> None:
    done = alice.cli.ok("store", "check")
    assert "store is clean" in done.stderr
    assert "orphan" not in done.stdout and "temp" not in done.stdout


def test_young_orphans_are_kept_with_exit_0_and_a_deadline(alice: Alice) -> None:
    alice.cli.ok("store", "check")  # makes the blob directories
    _orphan(alice.cli, 60)
    _orphan(alice.cli, 30)
    done = alice.cli.ok("store", "check")
    assert (
        "2 orphan blob(s) younger than the grace period, kept; they go at the next sweep after "
    ) in done.stdout
    assert "store is clean" in done.stderr
    done = alice.cli.ok("store", "check", "--fix")
    assert "kept" in done.stdout


def test_an_orphan_past_the_grace_period_exits_1_until_fixed(alice: Alice) -> None:
    alice.cli.ok("store", "check")
    old = _orphan(alice.cli, 7200)
    done = alice.cli.run("store", "check")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"orphan: blob {old} (kept)" in done.stdout
    assert "--fix" in done.stderr
    done = alice.cli.ok("store", "check", "--fix")
    assert f"orphan: blob {old} (removed)" in done.stdout


def test_temp_leftovers_are_reported_and_fix_removes_them(alice: Alice) -> None:
    alice.cli.ok("store", "check")
    tmp = alice.cli.data_dir / "blobs" / "tmp"
    dead = _dead_pid()
    (tmp / f"{new_blob_id().hex()}.{dead}").write_bytes(b"a" * 3000)
    (tmp / f"{new_blob_id().hex()}.deleted.{dead}").write_bytes(b"b" * 500)
    done = alice.cli.ok("store", "check")
    assert "temp files: 2 (3500 bytes) in blobs/tmp" in done.stdout
    done = alice.cli.ok("store", "check", "--fix")
    assert "removed 2 (3500 bytes)" in done.stdout
    assert list(tmp.iterdir()) == []
    assert "temp" not in alice.cli.ok("store", "check").stdout

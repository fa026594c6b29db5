"""A 50 MB delivery raises the server's peak RSS by well under the message size."""

from __future__ import annotations

import smtplib
from pathlib import Path

from .cryptmail_server import CryptmailServer, make_users, read_all


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_50mb_delivery_peak_rss(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    server = CryptmailServer(data_dir)
    server.start()
    try:
        small = b"Subject: warm-up\r\n\r\nx\r\n"
        with smtplib.LMTP("127.0.0.1", server.port) as client:
            client.sendmail("s@example.net", ["alice@example.org"], small)
        before = _vm_hwm_kib(server.pid)
        line = b"0123456789" * 7 + b"ABCDEFGH\r\n"
        big = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
        with smtplib.LMTP("127.0.0.1", server.port) as client:
            client.sendmail("s@example.net", ["alice@example.org"], big)
        after = _vm_hwm_kib(server.pid)
    finally:
        server.stop()
    grown_mib = (after - before) / 1024
    print(
        f"\npeak RSS before {before // 1024} MiB, after {after // 1024} MiB, +{grown_mib:.1f} MiB"
    )
    assert grown_mib < 32
    stored = read_all(data_dir, "alice@example.org")["INBOX"]
    assert len(stored) == 2 and len(stored[1]) == len(big)

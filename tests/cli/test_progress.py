"""The progress display of import, mailbox encrypt and export: a bar on a terminal, plain
lines otherwise. The clock is a fake one, so nothing here depends on real time."""

from __future__ import annotations

import io

import pytest

from cryptmail.cli._progress import ProgressDisplay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _display(interactive: bool) -> tuple[ProgressDisplay, io.StringIO, FakeClock]:
    stream = io.StringIO()
    display = ProgressDisplay(
        "import a@example.org", 10, 10 * 2048, stream=stream, interactive=interactive
    )
    clock = FakeClock()
    display._now = clock
    display.started = clock.now
    return display, stream, clock


def test_terminal_gets_one_bar_redrawn_with_messages_bytes_rate_and_eta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    display, stream, clock = _display(interactive=True)
    clock.now += 2
    display.update(4, 4 * 2048)
    clock.now += 2
    display.update(5, 5 * 2048)
    display.finish()
    out = stream.getvalue()
    frames = out.split("\r\x1b[2K")[1:]
    assert len(frames) == 3 and out.endswith("\n") and out.count("\n") == 1
    assert frames[0].startswith("[") and "####" in frames[0]
    assert "4/10 messages (40%)" in frames[0]
    assert "8.0 KB/20.0 KB" in frames[0]
    assert "2.0 msg/s" in frames[0] and "4.0 KB/s" in frames[0]
    assert "ETA 0:03" in frames[0]  # 12 KB left at 4 KB/s
    assert "5/10 messages (50%)" in frames[2] and "ETA 0:04" in frames[2]


def test_no_terminal_gets_plain_lines_now_and_then_and_one_at_the_end() -> None:
    display, stream, clock = _display(interactive=False)
    for done in range(1, 11):
        clock.now += 1  # a line at most every five seconds
        display.update(done, done * 2048)
    display.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert not any("\r" in line or "\x1b" in line or "[#" in line for line in lines)
    assert lines[0].startswith("import a@example.org: 1/10 messages")
    assert "6/10 messages" in lines[1]
    assert lines[-1].startswith("import a@example.org: 10/10 messages (100%), 20.0 KB/20.0 KB")
    assert lines[-1].endswith(" - done")


def test_abandon_ends_the_bar_line_on_a_terminal() -> None:
    display, stream, _clock = _display(interactive=True)
    display.update(1, 2048)
    display.abandon()
    assert stream.getvalue().endswith("\n")

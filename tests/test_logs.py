"""The JSON log: one object per line with stable fields; the text log as before."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.logs import JsonFormatter, formatter_for, use_format


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_json_lines_have_stable_fields_and_one_line_per_event(captured: io.StringIO) -> None:
    use_format("json")
    log = logging.getLogger("cryptmail.test")
    log.warning("two\nlines for user id %d", 7)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "logger", "message", "pid"}
    assert first["level"] == "WARNING" and first["logger"] == "cryptmail.test"
    assert first["message"] == "two\nlines for user id 7"
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]


def test_text_format_is_the_one_line_format(captured: io.StringIO) -> None:
    use_format("text")
    logging.getLogger("cryptmail.test").warning("hello %s", "there")
    assert captured.getvalue().rstrip().endswith("WARNING cryptmail.test: hello there")
    assert not isinstance(formatter_for("text"), JsonFormatter)


def test_a_command_logs_json_when_configured(tmp_path: Path) -> None:
    config = tmp_path / "cryptmail.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nlog_format = "json"\n')
    done = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(config), "-v", "domain", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert events, done.stderr
    assert all(line.startswith("{") for line in done.stderr.splitlines() if line.strip())

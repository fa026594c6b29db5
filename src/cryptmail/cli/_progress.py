"""Progress of a long admin job (mailbox encrypt, import), on stderr.

On a terminal: one bar redrawn in place (messages, bytes, rate, ETA), at most ten times a
second. Otherwise (a log file, a pipe, cron): one plain line every few seconds and one at
the end, so a log shows that the job moves without filling up.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

_REDRAW_S = 0.1
_LINE_EVERY_S = 5.0


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


def human_seconds(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


class ProgressDisplay:
    """`update(done_messages, done_bytes)` as work goes on; `finish()` at the end."""

    def __init__(
        self,
        label: str,
        total_messages: int,
        total_bytes: int,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.label = label
        self.total_messages = total_messages
        self.total_bytes = total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._now = time.monotonic
        self.started = self._now()
        self._last_draw = float("-inf")
        self.done_messages = 0
        self.done_bytes = 0
        self._drawn = False

    def set_totals(self, total_messages: int, total_bytes: int) -> None:
        self.total_messages, self.total_bytes = total_messages, total_bytes

    def update(self, done_messages: int, done_bytes: int) -> None:
        self.done_messages, self.done_bytes = done_messages, done_bytes
        now = self._now()
        every = _REDRAW_S if self.interactive else _LINE_EVERY_S
        if now - self._last_draw >= every:
            self._last_draw = now
            self._draw(final=False)

    def finish(self, note: str = "") -> None:
        """Draw the final state and end the line."""
        self._draw(final=True, note=note)

    def abandon(self) -> None:
        """End the bar's line (interrupted), so the next message starts on its own line."""
        if self.interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _rate(self) -> tuple[float, float, float]:
        elapsed = max(self._now() - self.started, 1e-6)
        return elapsed, self.done_messages / elapsed, self.done_bytes / elapsed

    def line(self) -> str:
        """The status text without the bar."""
        elapsed, per_s, bytes_per_s = self._rate()
        if self.total_messages:
            percent = 100.0 * self.done_messages / self.total_messages
        else:
            percent = 100.0
        remaining = self.total_bytes - self.done_bytes
        if bytes_per_s > 0 and self.total_bytes:
            eta = human_seconds(remaining / bytes_per_s)
        elif per_s > 0:
            eta = human_seconds((self.total_messages - self.done_messages) / per_s)
        else:
            eta = "?"
        return (
            f"{self.label}: {self.done_messages}/{self.total_messages} messages "
            f"({percent:.0f}%), {human_bytes(self.done_bytes)}/{human_bytes(self.total_bytes)}, "
            f"{per_s:.1f} msg/s, {human_bytes(bytes_per_s)}/s, "
            f"elapsed {human_seconds(elapsed)}, ETA {eta}"
        )

    def _bar(self, width: int) -> str:
        fraction = self.done_messages / self.total_messages if self.total_messages else 1.0
        filled = int(round(width * min(max(fraction, 0.0), 1.0)))
        return "[" + "#" * filled + "-" * (width - filled) + "]"

    def _draw(self, *, final: bool, note: str = "") -> None:
        text = self.line()
        if note:
            text += f" ({note})"
        if self.interactive:
            columns = shutil.get_terminal_size((100, 20)).columns
            bar_width = max(10, min(40, columns - len(text) - 2))
            shown = f"{self._bar(bar_width)} {text}"[: max(columns - 1, 20)]
            self.stream.write("\r\x1b[2K" + shown + ("\n" if final else ""))
        else:
            self.stream.write(text + ("" if not final else " - done") + "\n")
        self.stream.flush()
        self._drawn = not final

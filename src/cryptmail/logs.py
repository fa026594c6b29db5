"""How log records are written: `log_format = "text"` (one line, LOG_FORMAT) or "json"
(one JSON object per line, for a log collector).

The JSON fields are stable: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`,
`message`, `pid`, and `exception` (the formatted traceback) when there is one. A newline
inside a message stays inside its JSON string, so one event is always one line. The
records are the same in both forms: nothing that is not in a text line is added, so
what keeps secrets out of the text log keeps them out of the JSON one.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Literal

from cryptmail.config import LOG_FORMAT

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exception"] = record.exc_text
        return json.dumps(event, ensure_ascii=False)


def formatter_for(kind: LogFormat) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(LOG_FORMAT)


def use_format(kind: LogFormat) -> None:
    """Write this process's log (the root logger's handlers) in `kind`."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter_for(kind))

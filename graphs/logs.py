"""Logging on every path: the level and format of convomem's loggers (CONVOMEM_LOG_LEVEL,
CONVOMEM_LOG_FORMAT, `convomem -v`). Only the `convomem` logger tree is configured: a host (LangGraph
Server, an application embedding the API) keeps its own handlers for everything else."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "LogFormat", "LogLevel", "configure_logging"]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
ROOT = "convomem"
_HANDLER_NAME = "convomem-configured"
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields passed in `extra`, and the
    exception's class and text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = type(record.exc_info[1]).__name__
            entry["error_message"] = str(record.exc_info[1])
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: LogLevel, fmt: LogFormat, *, stream: TextIO | None = None) -> None:
    """Send convomem's records at `level` and above to `stream` (stderr) in `fmt`; calling it again
    replaces the handler it added, so the last configuration wins."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False

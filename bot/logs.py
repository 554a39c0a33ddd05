"""Structured logs: one JSON object a line, personal data masked before anything is written."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bot import jsoncodec
from bot.privacy import mask


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        fields = getattr(record, "fields", None)  # extra={"fields": {...}}: more keys of the line, masked alike
        if fields:
            entry.update((k, mask(v) if isinstance(v, str) else v) for k, v in fields.items() if k not in entry)
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        return jsoncodec.dumps(entry)


def setup(level: int = logging.INFO) -> None:
    """Route every logger (aiohttp's access log included) through the masking JSON formatter."""
    # Not written by the formatter, so not worth gathering for every record (the logging HOWTO's "Optimization").
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # The follow-up sweep runs every few seconds: its "running job" lines would drown everything else.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))

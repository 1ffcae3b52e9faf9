"""Structured JSON log lines, each carrying the request ID.

Only whitelisted `extra` attributes are written, so nothing reaches the log by accident;
no code path passes a secret as one of them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from app.request_context import current_request_fields, current_request_id

LOGGED_EXTRAS = (
    "operation",
    "caller_key_id",
    "salesforce_account_id",
    "salesforce_opportunity_id",
    "stigg_customer_id",
    "idempotency_key",
    "status",
    "code",
    "stigg_error_code",
    "attempt",
    "attempts",
    "error_code",
    "duration_ms",
    "budget_wait_ms",
    "outcome",
    "method",
    "path",
    "error",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            line["request_id"] = request_id
        line.update(current_request_fields())
        for name in LOGGED_EXTRAS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)

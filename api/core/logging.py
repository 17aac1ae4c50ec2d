"""Structured logs: one JSON object per line, each carrying the request id.

What may be logged: internal ids (UUIDs), routes as templates, status codes, durations, counts.
What must never be logged: patient identifiers (external ids, names, DICOM headers), query
strings, request bodies, tokens. Request lines are therefore written by
:class:`api.middleware.RequestContextMiddleware` from the *route template*, and uvicorn's own
access log (which prints the raw path with its query string) is switched off.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["REQUEST_ID", "JsonFormatter", "configure_logging", "log_event"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "igrt_request_id", default=None
)
"""The id of the request being served (copied into worker threads by anyio)."""

_HANDLER_MARK = "_igrt_handler"
_LOG = logging.getLogger("api")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            document["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = REQUEST_ID.get()
        fields = getattr(record, "fields", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""
        prefix = f"[{request_id}] " if request_id else ""
        return f"{prefix}{text} {extra}".rstrip()


def configure_logging(level: str = "INFO", log_format: str = "json") -> None:
    """Send the root, ``api``, ``igrt`` and uvicorn loggers to one structured stderr handler.

    Idempotent: a second call replaces the handler it installed before. uvicorn's access log is
    disabled because it prints raw paths with query strings.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers = [handler]
    logging.getLogger("uvicorn.access").disabled = True


def log_event(message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` on the ``api`` logger with structured ``fields`` (no patient data!)."""
    _LOG.log(level, message, extra={"fields": fields})

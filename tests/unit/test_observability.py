"""Logs, request ids and the metrics directory, without servers."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from protocols import tracing
from protocols.errors import ConfigError
from protocols.logs import TEXT_FORMAT, JsonFormatter, RequestIdFilter
from protocols.metrics.process import remove_dead
from protocols.settings import Settings
from web.observe import Observe


class _Odd:
    def __repr__(self) -> str:
        return "<odd>"


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"chorus.test.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_parse_and_carry_the_request_id_and_extra_fields() -> None:
    logger, out = _logger(JsonFormatter())
    with tracing.bound("req-7"):
        logger.info("job %s started", "job_1", extra={"job_id": "job_1", "odd": _Odd()})
    logger.info("no request here")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "job job_1 started" and first["level"] == "INFO"
    assert first["request_id"] == "req-7" and first["job_id"] == "job_1"
    assert first["odd"] == "<odd>"  # what JSON cannot hold: its repr
    assert first["ts"].endswith("Z") and first["logger"].startswith("chorus.test")
    assert "request_id" not in second
    assert "ValueError: boom" in third["exc_info"]


def test_text_lines_end_with_the_request_id() -> None:
    logger, out = _logger(logging.Formatter(TEXT_FORMAT))
    logger.info("plain")
    logger.info("explicit", extra={"request_id": "r-1"})
    with tracing.bound("r-2"):
        logger.info("bound")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("plain")
    assert lines[1].endswith("explicit [rid=r-1]") and lines[2].endswith("bound [rid=r-2]")


def test_files_of_dead_processes_are_removed(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    for name in (f"counter_{dead}.db", f"histogram_{dead}.db", f"counter_{os.getpid()}.db",
                 "notes.db"):
        (tmp_path / name).write_bytes(b"")
    removed = remove_dead(tmp_path)
    assert sorted(p.name for p in removed) == [f"counter_{dead}.db", f"histogram_{dead}.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{os.getpid()}.db",
                                                         "notes.db"]


def test_settings() -> None:
    s = Settings.from_env({"CHORUS_ACCESS_LOG": "0", "CHORUS_LOG_FORMAT": "json",
                           "CHORUS_METRICS": "admin", "CHORUS_DATA_DIR": "/srv/chorus"})
    assert (s.access_log, s.log_format, s.metrics) == (False, "json", "admin")
    assert str(s.metrics_path) == "/srv/chorus/metrics"
    assert Settings.from_env({}).access_log is True
    for bad in ({"CHORUS_METRICS": "public"}, {"CHORUS_LOG_FORMAT": "xml"},
                {"CHORUS_ACCESS_LOG": "maybe"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


async def _call(app: Observe, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/things",
             "query_string": b"sig=secret", "headers": headers, "client": ("127.0.0.1", 5)}
    await app(scope, receive, send)
    return sent


async def test_the_wrapper_binds_returns_and_logs_the_request_id(caplog) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(tracing.request_id())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.INFO, logger="chorus.access")
    sent = await _call(Observe(inner), [(b"x-request-id", b"abc-1")])
    assert seen == ["abc-1"] and tracing.request_id() == ""  # bound for the request only
    assert (b"x-request-id", b"abc-1") in sent[0]["headers"]
    (line,) = [r for r in caplog.records if r.name == "chorus.access"]
    assert (line.method, line.path, line.status, line.request_id) == (
        "GET", "/v1/things", 204, "abc-1")
    assert "sig" not in line.getMessage() and "secret" not in line.getMessage()

    caplog.clear()
    sent = await _call(Observe(inner, access_log=False), [(b"x-request-id", b"\xff")])
    made = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert len(made) == 32 and seen[-1] == made
    assert not [r for r in caplog.records if r.name == "chorus.access"]

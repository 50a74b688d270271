"""protocols/postgres/store.py ``QuietOutages``: a connection error in a log record becomes one
line without a traceback; any other error keeps its traceback the first time its logger reports
that type. (No database here: the records are made by hand.)"""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from protocols.postgres.store import QuietOutages, _log_loop_error

LOGGER = logging.getLogger("chorus.test.quiet")


def record_of(exc: BaseException, name: str = LOGGER.name) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return LOGGER.makeRecord(name, logging.WARNING, __file__, 1,
                             "Failed to restore the pool connection floor; %s", ("retrying",),
                             info)


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    TimeoutError(),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed\nin the middle"),
])
def test_a_connection_error_is_one_line_without_traceback(exc: BaseException) -> None:
    record = record_of(exc)
    assert QuietOutages().filter(record)
    assert record.exc_info is None and record.exc_text is None
    text = logging.Formatter().format(record)
    assert text.startswith("Failed to restore the pool connection floor; retrying (")
    assert type(exc).__name__ in text and "Traceback" not in text and "\n" not in text


def test_an_unexpected_error_keeps_its_traceback_once_per_logger() -> None:
    quiet = QuietOutages()
    first, again = record_of(KeyError("bug")), record_of(KeyError("bug"))
    elsewhere = record_of(KeyError("bug"), name="asyncpg.pool")
    assert quiet.filter(first) and quiet.filter(again) and quiet.filter(elsewhere)
    assert first.exc_info is not None  # the first one: the whole traceback
    assert "Traceback" in logging.Formatter().format(first)
    assert again.exc_info is None
    assert "KeyError: 'bug'; traceback logged before" in again.getMessage()
    assert elsewhere.exc_info is not None  # another logger: its own first time


def test_a_record_without_an_error_is_untouched() -> None:
    record = LOGGER.makeRecord(LOGGER.name, logging.WARNING, __file__, 1, "%s%%", ("50",), None)
    assert QuietOutages().filter(record) and record.getMessage() == "50%"


def test_the_loop_handler_logs_an_orphaned_connection_error_in_one_line(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="chorus.store")
    _log_loop_error(None, {"message": "Task exception was never retrieved",
                           "exception": ConnectionResetError(104, "Connection reset by peer")})
    (record,) = caplog.records
    assert record.exc_info is None and "Traceback" not in caplog.text
    assert record.getMessage() == ("asyncio: Task exception was never retrieved"
                                   " (ConnectionResetError: [Errno 104] Connection reset by peer)")

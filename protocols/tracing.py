"""Request ids (``X-Request-ID``): the id of the HTTP request being served, or of the job being
worked on, for log lines and events.

The HTTP front binds the id of each request (``web/observe.py``); the Intake copies it into the
jobs it creates (``NewJob.request_id`` -> ``jobs.request_id`` and ``SpeechJob.request_id``); the
TTS pool binds a job's id while it works on it. ``job_event`` adds it to an event's data and the
log formatters add it to every line (``protocols/logs.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

#: the request id of what this task is doing ("": none)
current: contextvars.ContextVar[str] = contextvars.ContextVar("chorus_request_id", default="")

MAX_LENGTH = 128
#: what a caller's id may hold: letters, digits and ``-_.:/+=@`` (a UUID, a W3C trace id, ...)
_VALID = re.compile(r"[A-Za-z0-9\-_.:/+=@]{1,128}")  # MAX_LENGTH


def valid(value: str) -> bool:
    """Whether a caller's ``X-Request-ID`` is kept (else a new one is made)."""
    return _VALID.fullmatch(value) is not None


def new_id() -> str:
    """A fresh request id: 32 hex characters (128 random bits, like a UUID4 without dashes)."""
    return os.urandom(16).hex()


def request_id() -> str:
    return current.get()


@contextlib.contextmanager
def bound(value: str) -> Iterator[None]:
    """``request_id()`` is ``value`` inside the block (in this task and tasks it starts)."""
    token = current.set(value)
    try:
        yield
    finally:
        current.reset(token)

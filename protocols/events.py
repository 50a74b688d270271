"""Events: what happened to a user's resources, as frozen msgspec Structs.

An event names its ``kind``, the ``owner`` (user id) whose resource it concerns, the ``subject``
(a job id for ``job.*`` and ``tts.*``, a voice id for ``voice.*``), a small ``data`` payload and
the unix time ``at``. Its ``id`` is the Redis stream entry id (``<ms>-<seq>``), the same in the
global stream and in the owner's stream, so it doubles as the SSE event id.

Delivery is at-least-once on the bus: a write retried after a timeout, a redelivered job or a
restarted subscriber can repeat an event. Treat ``(subject, kind)`` as idempotent; the job row
(``GET /v1/jobs/{id}``) stays the truth.
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Any

import msgspec

from protocols import tracing
from protocols.messages import Job, JobStatus, Lane


class EventKind(StrEnum):
    #: a job was accepted (the seed's TTS_CREATION): owner, job id, voice, characters
    tts_creation = "tts.creation"
    tts_created = "tts.created"
    tts_failed = "tts.failed"
    voice_created = "voice.created"
    voice_updated = "voice.updated"
    voice_deleted = "voice.deleted"
    job_queued = "job.queued"
    job_running = "job.running"
    job_succeeded = "job.succeeded"
    job_failed = "job.failed"
    job_dead = "job.dead"
    job_cancelled = "job.cancelled"
    storybook_progress = "storybook.progress"
    storybook_line_succeeded = "storybook.line.succeeded"
    storybook_line_failed = "storybook.line.failed"
    storybook_retry_started = "storybook.retry.started"
    storybook_retry_finished = "storybook.retry.finished"
    storybook_succeeded = "storybook.succeeded"
    storybook_partial = "storybook.partial"
    storybook_failed = "storybook.failed"
    storybook_cancelled = "storybook.cancelled"

    @classmethod
    def for_status(cls, status: JobStatus) -> EventKind:
        return cls(f"job.{status.value}")

    @property
    def ends_job(self) -> bool:
        return self in TERMINAL_JOB_KINDS


TERMINAL_JOB_KINDS = frozenset({
    EventKind.job_succeeded, EventKind.job_failed, EventKind.job_dead, EventKind.job_cancelled
})


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: EventKind
    owner: str
    subject: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    at: float = 0.0  # unix seconds
    id: str = ""  # the stream entry id, set when read back

    def view(self) -> dict[str, Any]:
        """The JSON an SSE client sees (never the owner: it is the caller)."""
        return {
            "id": self.id or None, "kind": self.kind.value, "subject": self.subject,
            "at": self.at, "data": self.data,
        }


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)
_ID = re.compile(r"\d{1,20}-\d{1,20}")


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes, entry_id: str) -> Event:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for a foreign payload."""
    return msgspec.structs.replace(_decoder.decode(payload), id=entry_id)


def valid_event_id(value: str) -> bool:
    """A stream entry id: ``<ms>-<seq>``."""
    return _ID.fullmatch(value) is not None


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def job_event(
    kind: EventKind, job_id: str, owner: str, *, at: float | None = None, **data: Any
) -> Event:
    """``data`` gains the ``request_id`` bound where it is made (``protocols.tracing``) unless
    it gives one (None or "": none)."""
    rid = data.pop("request_id", None) if "request_id" in data else tracing.request_id()
    if rid:
        data["request_id"] = rid
    return Event(kind=kind, owner=owner, subject=job_id, data=data,
                 at=time.time() if at is None else at)


def lane_data(job: Job) -> dict[str, Any]:
    """``{"lane": "batch"}`` for a batch-lane job (a storybook line), else nothing: carried by
    the events that end a job, so the StorybookRunner tells its lines' events from every other
    job's without a query."""
    return {"lane": job.lane.value} if job.lane is not Lane.interactive else {}


def job_state_event(job: Job) -> Event:
    """The job's current state as an event (no id): what a late SSE client is told first."""
    data: dict[str, Any] = {"status": job.status.value, "attempts": job.attempts}
    if job.audio_id is not None:
        data["audio_id"] = job.audio_id
    if job.error_code is not None and job.status.terminal:
        data["error"] = {"code": job.error_code, "message": job.error_message or ""}
    return job_event(
        EventKind.for_status(job.status), job.id, job.owner, request_id=job.request_id, **data
    )


class NoEvents:
    """An ``EventSink`` that drops everything (tools, tests that do not look at events)."""

    def publish(self, event: Event) -> None:
        pass


NO_EVENTS = NoEvents()

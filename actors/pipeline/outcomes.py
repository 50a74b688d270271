"""Outcomes: how a job's result is recorded, shared by the TTS pool's two stages (TTSActor and
Storer): typed job errors (retry later or fail for good), best-effort error notes, redelivery
backoff, and the job events (published after the state change is durable; never blocking,
never raising). Each stage keeps its own counts."""

from __future__ import annotations

import logging

import trio

from protocols.errors import ChorusError, QueueUnavailable, StoreUnavailable
from protocols.events import NO_EVENTS, EventKind, job_event, lane_data
from protocols.faults import FaultPlan
from protocols.messages import Ack, Delivery, Job, JobStatus, NewAudio, Release, Settlement
from protocols.metrics import instruments as metrics
from protocols.ports import EventSink, JobStore
from protocols.settings import Settings

log = logging.getLogger("chorus.tts")

BACKOFF_MAX_S = 30.0


def is_outage(exc: BaseException) -> bool:
    """Redis or Postgres away: a fault of ours, not of the job."""
    return isinstance(exc, (QueueUnavailable, StoreUnavailable))


class Outcomes:
    def __init__(
        self, settings: Settings, store: JobStore, events: EventSink = NO_EVENTS,
        faults: FaultPlan | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._events = events
        self._random = (faults or FaultPlan()).random
        self.succeeded = self.failed = self.retried = self.outages = 0

    def outage_release(self, delivery: Delivery) -> Release:
        """Give the entry back after a backoff, its delivery count set back to what it was
        before this delivery (XCLAIM RETRYCOUNT): an outage never spends the job's attempts."""
        return Release(delivery.entry_id, self.backoff(delivery),
                       retry_count=max(0, delivery.deliveries - 1))

    async def job_error(self, delivery: Delivery, exc: ChorusError) -> Settlement:
        """A retryable error is noted on the job and the entry released after a backoff; any
        other fails the job (the entry is acked). An outage of our own (Redis or Postgres away)
        is not the job's error: the entry is released without spending one of the job's
        deliveries, and nothing is noted on the job."""
        if is_outage(exc):
            self.retried += 1
            self.outages += 1
            return self.outage_release(delivery)
        metrics.error("job", exc.code)
        if exc.retryable:
            self.retried += 1
            await self.note(delivery, exc.code, exc.detail)
            return Release(delivery.entry_id, self.backoff(delivery))
        self.failed += 1
        failed = await self._store.fail_job(delivery.job.job_id, exc.code, exc.detail)
        self.publish_failed(failed, exc)
        return Ack(delivery.entry_id)

    async def job_errors(
        self, failed: list[tuple[int, Delivery, ChorusError]]
    ) -> dict[int, Settlement]:
        """``job_error`` for several jobs at once (their store writes in parallel, each
        bounded): settlements by the given index; the first unexpected exception is raised
        once all are done."""
        out: dict[int, Settlement] = {}
        crashed: list[Exception] = []

        async def one(i: int, delivery: Delivery, exc: ChorusError) -> None:
            try:
                out[i] = await self.job_error(delivery, exc)
            except Exception as unexpected:
                crashed.append(unexpected)

        async with trio.open_nursery() as nursery:
            for i, delivery, exc in failed:
                nursery.start_soon(one, i, delivery, exc)
        if crashed:
            raise crashed[0]
        return out

    async def note(self, delivery: Delivery, code: str, message: str) -> None:
        """Record a failure on the job; best effort (the store may be what failed)."""
        with trio.move_on_after(self.settings.db_timeout_s, shield=True):
            try:
                await self._store.note_error(delivery.job.job_id, code, message[:1000])
            except ChorusError as exc:
                log.warning("could not record error on job %s: %s", delivery.job.job_id, exc)

    def backoff(self, delivery: Delivery) -> float:
        base = min(BACKOFF_MAX_S, 0.5 * 2 ** max(0, delivery.deliveries - 1))
        return base * (0.5 + self._random.random() / 2)

    # -- events ------------------------------------------------------------------------------------

    def publish_running(self, job: Job) -> None:
        if job.status is JobStatus.running:  # the queued|running -> running start just made
            job_started(job)
            self._events.publish(job_event(
                EventKind.job_running, job.id, job.owner, attempts=job.attempts,
                request_id=job.request_id,
            ))

    def publish_succeeded(self, job: Job, audio: NewAudio) -> None:
        if job.status is not JobStatus.succeeded or job.audio_id is None:
            return  # the compare-and-set did not apply (the job was failed or dead meanwhile)
        job_ended(job)
        rid = job.request_id
        self._events.publish(job_event(
            EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id, request_id=rid,
            **lane_data(job),
        ))
        self._events.publish(
            job_event(
                EventKind.tts_created, job.id, job.owner, audio_id=job.audio_id,
                duration_s=audio.duration_s, format=audio.format,
                content_type=audio.content_type, characters=job.characters, request_id=rid,
            )
        )

    def publish_final(self, job: Job) -> None:
        """The final event again (events are at-least-once: a repeat is harmless)."""
        lane = {**lane_data(job), "request_id": job.request_id}
        if job.status is JobStatus.succeeded:
            event = job_event(
                EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id, **lane
            )
        elif job.status is JobStatus.cancelled:  # withdrawn while queued: never generated
            event = job_event(EventKind.job_cancelled, job.id, job.owner, **lane)
        else:
            kind = EventKind.job_dead if job.status is JobStatus.dead else EventKind.job_failed
            error = {"code": job.error_code or "", "message": job.error_message or ""}
            event = job_event(kind, job.id, job.owner, error=error, **lane)
        self._events.publish(event)

    def publish_failed(self, job: Job | None, exc: ChorusError) -> None:
        if job is None or job.status is not JobStatus.failed or job.error_code != exc.code:
            return  # unknown, or already terminal before this failure
        job_ended(job)
        error = {"code": exc.code, "message": exc.detail[:1000]}
        rid = job.request_id
        self._events.publish(job_event(
            EventKind.job_failed, job.id, job.owner, error=error, request_id=rid,
            **lane_data(job),
        ))
        self._events.publish(
            job_event(EventKind.tts_failed, job.id, job.owner, request_id=rid, **error)
        )


# -- a job's start and end: one INFO line each, and the metrics ------------------------------------


def job_started(job: Job) -> None:
    """A job just started (the compare-and-set applied): its time in the queue (first start
    only: a redelivery is not a wait), an INFO line with its request id."""
    waited = None
    if job.attempts <= 1 and job.started_at is not None:
        waited = (job.started_at - job.created_at).total_seconds()
        metrics.job_started(waited, job.lane.value)
    else:
        metrics.job_transition("running")
    if not log.isEnabledFor(logging.INFO):  # its line is not written: not made either
        return
    log.info(
        "job %s started (attempt %d%s)", job.id, job.attempts,
        f", waited {waited:.3f}s" if waited is not None else "",
        extra={"job_id": job.id, "request_id": job.request_id or "", "attempt": job.attempts,
               "queue_wait_s": waited},
    )


def job_ended(job: Job) -> None:
    """A job reached a final status (succeeded, failed, dead): the duration from its first
    start, counted and in an INFO line with its request id."""
    duration = None
    if job.started_at is not None and job.finished_at is not None:
        duration = (job.finished_at - job.started_at).total_seconds()
    metrics.job_finished(job.status.value, duration)
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        "job %s %s%s%s", job.id, job.status.value,
        f" in {duration:.3f}s" if duration is not None else "",
        f" ({job.error_code})" if job.error_code and job.status is not JobStatus.succeeded
        else "",
        extra={"job_id": job.id, "request_id": job.request_id or "",
               "status": job.status.value, "duration_s": duration,
               "error_code": job.error_code},
    )


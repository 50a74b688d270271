"""OrphanSweeper: fails jobs whose submit never reached the stream.

``POST /v1/jobs`` writes the job row, then XADDs it; when the XADD fails the row is discarded
and the client gets 503. If the discard fails too (Postgres away at that moment), the row stays
``queued`` with no stream entry: it would never run, and its characters would stay reserved
against the owner's quota. Every ``orphan_sweep_interval_s`` this actor looks at never-started
jobs queued for longer than ``orphan_age_s`` (and less than the enqueue marker's lifetime), asks
Redis which of them were XADDed (the enqueue marker), and fails the others with
``enqueue_failed`` (compare-and-set: a job started meanwhile is left alone). The client was told
the submit failed; a retry with the same idempotency key puts the job back on the queue, in
its own lane (``Job.to_stream`` carries it). The enqueue marker is per job id, whichever lane's
stream the job went to, so one look covers both lanes.
Several workers may sweep at once: every step is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import trio

from protocols.errors import ChorusError, EnqueueFailed
from protocols.events import EventKind, job_event, lane_data
from protocols.messages import JobStatus
from protocols.metrics import instruments as metrics
from protocols.ports import EventSink, JobQueue, JobStore
from protocols.redis.queue import ENQUEUE_MARKER_TTL_MS
from protocols.settings import Settings

log = logging.getLogger("chorus.sweeper")

ENQUEUE_FAILED = EnqueueFailed.code
#: only jobs younger than the enqueue marker (with a day to spare) can be judged by it
MAX_AGE_S = ENQUEUE_MARKER_TTL_MS / 1000 - 24 * 3600


class OrphanSweeper:
    def __init__(
        self, *, settings: Settings, store: JobStore,
        open_queue: Callable[[], AbstractAsyncContextManager[JobQueue]], events: EventSink,
    ) -> None:
        self.settings, self._store, self._open_queue, self._events = (
            settings, store, open_queue, events
        )

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_queue() as queue:
            task_status.started()
            while not stop.is_set():
                try:
                    await self.sweep(queue)
                except ChorusError as exc:  # Redis or Postgres away: next round
                    log.warning("orphan sweep skipped: %s", exc)
                with trio.move_on_after(self.settings.orphan_sweep_interval_s):
                    await stop.wait()

    async def sweep(self, queue: JobQueue) -> list[str]:
        """One round; returns the ids of the jobs it failed."""
        candidates = await self._store.orphan_candidates(
            self.settings.orphan_age_s, MAX_AGE_S
        )
        if not candidates:
            return []
        enqueued = await queue.enqueued(candidates)
        failed: list[str] = []
        for job_id in candidates:
            if job_id in enqueued:
                continue
            job = await self._store.fail_job(
                job_id, ENQUEUE_FAILED,
                "The job never reached the queue (its submit failed and was answered 503);"
                " submit it again, or retry with the same idempotency key.",
            )
            if job is not None and job.status is JobStatus.failed and (
                job.error_code == ENQUEUE_FAILED
            ):
                failed.append(job_id)
                metrics.job_transition("failed")
                metrics.error("job", ENQUEUE_FAILED)
                error = {"code": ENQUEUE_FAILED, "message": job.error_message or ""}
                self._events.publish(
                    job_event(EventKind.job_failed, job.id, job.owner, error=error,
                              request_id=job.request_id, **lane_data(job))
                )
        if failed:
            log.warning("failed %d job(s) whose submit never reached the queue", len(failed))
        return failed

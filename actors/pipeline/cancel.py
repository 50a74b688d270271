"""Cancelling one job (``DELETE /v1/jobs/{id}``): a queued job is withdrawn, a running one
finishes, an ended one stays as it is.

The job's cancel marker goes to Redis first (``Coordinator.mark_job_cancelled``), then the
compare-and-set ``queued -> cancelled`` to Postgres (``JobStore.cancel_job``). A worker that
reads the entry afterwards finds the marker (no provider call before the start is known) and
the job ended (only an ack). The quota reservation is the job's own row being unfinished, so
it is freed by the same statement. Nothing is charged: the finish is a compare-and-set too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from protocols.errors import ChorusError, NotCancellable, NotFound
from protocols.events import EventKind, job_event, lane_data
from protocols.messages import Job, JobStatus
from protocols.metrics import instruments as metrics
from protocols.ports import EventSink, JobStore

log = logging.getLogger("chorus.jobs")


class JobRunning(NotCancellable):
    """A running job cannot be withdrawn: it finishes (and is charged if it succeeds)."""

    code = "job_running"
    title = "The job is running and will finish"


async def cancel_job(
    store: JobStore, events: EventSink, mark_cancelled: Callable[[str], Awaitable[None]],
    job_id: str, owner: str,
) -> Job:
    """Cancel the owner's queued job and publish ``job.cancelled``; the job as it now is.
    A repeat on a job this cancelled answers it again. Raises ``NotFound`` (unknown, or
    another user's), ``JobRunning`` (409) or ``NotCancellable`` (409, it has ended).
    Redis away: the cancel goes on without the marker (the entry, read later, may then cost
    one provider call, never a charge)."""
    job = await store.get_job(job_id, owner=owner)
    if job is None:
        raise NotFound(f"No job {job_id!r}.")
    if job.status is JobStatus.queued:
        try:
            await mark_cancelled(job.id)
        except ChorusError as exc:
            log.warning("job %s: cancel marker not set: %s", job.id, exc)
        after = await store.cancel_job(job.id, owner)
        if after is None:  # deleted meanwhile: nothing of it is left to cancel
            raise NotFound(f"No job {job_id!r}.")
        if after.status is JobStatus.cancelled and job.status is JobStatus.queued:
            events.publish(job_event(EventKind.job_cancelled, after.id, after.owner,
                                     status=after.status.value, **lane_data(after)))
            metrics.job_transition(JobStatus.cancelled.value)
        job = after
    if job.status is JobStatus.cancelled:
        return job
    if job.status is JobStatus.running:
        raise JobRunning(
            f"Job {job.id} is running; it will finish (a running job cannot be withdrawn).",
            status_now=job.status.value,
        )
    raise NotCancellable(f"Job {job.id} has already ended ({job.status.value}).",
                         status_now=job.status.value)

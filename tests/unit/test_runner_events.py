"""The StorybookRunner wakes only for its lines' events (``protocols.events.lane_data``)."""

from __future__ import annotations

import datetime as dt

from actors.storybooks.runner import StorybookRunner
from protocols.events import EventKind, job_event, lane_data
from protocols.messages import Job, JobStatus, Lane
from protocols.settings import Settings


def job(lane: Lane) -> Job:
    return Job(id="job_1", owner="u", status=JobStatus.succeeded, text="t", voice_id="v",
               language=None, output_format="mp3_44100_128", idempotency_key=None,
               request_hash="h", attempts=1, characters=1, created_at=dt.datetime.now(dt.UTC),
               lane=lane)


def test_only_a_batch_jobs_end_names_its_lane():
    assert lane_data(job(Lane.batch)) == {"lane": "batch"}
    assert lane_data(job(Lane.interactive)) == {}


async def test_the_runner_ignores_every_other_jobs_events():
    runner = StorybookRunner(Settings(), store=None, intake=None, open_bus=None,  # type: ignore[arg-type]
                             consumer="c")
    await runner._on_event(job_event(EventKind.job_succeeded, "job_a", "u"))
    assert runner.statistics().events_seen == 0 and not runner._wake.is_set()
    await runner._on_event(job_event(EventKind.job_succeeded, "job_b", "u",
                                     **lane_data(job(Lane.batch))))
    assert runner.statistics().events_seen == 1 and runner._wake.is_set()
    assert runner._dirty_jobs == {"job_b"}

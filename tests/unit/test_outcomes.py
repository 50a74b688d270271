"""Outcomes: an outage of our own (Redis or Postgres away) never spends a job's deliveries and
is never recorded as the job's error; the job's own retryable errors still count."""

from __future__ import annotations

from actors.pipeline.outcomes import Outcomes
from protocols.errors import ProviderUnavailable, QueueUnavailable, StoreUnavailable
from protocols.messages import Delivery, Release, SpeechJob
from protocols.settings import Settings
from tests.support.fakes import FakeJobStore


def delivery(n: int) -> Delivery:
    job = SpeechJob(job_id="j1", owner="u", text="Hello.", voice_id="v")
    return Delivery(entry_id="1-0", job=job, deliveries=n)


async def test_an_outage_releases_without_counting_and_notes_nothing():
    store = FakeJobStore()
    outcomes = Outcomes(Settings(), store)
    for exc in (StoreUnavailable("database away"), QueueUnavailable("redis away")):
        settled = await outcomes.job_error(delivery(4), exc)
        assert isinstance(settled, Release)
        assert settled.retry_count == 3  # this 4th delivery is given back uncounted
        assert settled.delay > 0
    assert store.calls["note_error"] == 0  # not the job's error: the real one stays
    assert outcomes.outages == 2


async def test_a_jobs_own_retryable_error_still_counts_and_is_noted():
    store = FakeJobStore()
    settled = await Outcomes(Settings(), store).job_error(
        delivery(4), ProviderUnavailable("busy")
    )
    assert isinstance(settled, Release) and settled.retry_count is None
    assert store.calls["note_error"] == 1

"""The Intake on in-memory fakes: what a submitter sees of a cache hit, a failed enqueue and an
idempotent repeat (the HTTP status codes on top of it are in ``test_web.py``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio
import trio.testing

from actors.pipeline import intake as intake_module
from actors.pipeline.intake import Intake
from protocols.domain.audio import parse_format
from protocols.domain.voices import VoiceCatalog
from protocols.errors import ChorusError, QueueUnavailable, StoreUnavailable, UnknownVoice
from protocols.events import EventKind
from protocols.messages import Job, JobRequest, JobStatus, Lane, NewAudio, NewJob, SpeechJob, User
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore, RecordingEvents
from tests.support.timing import capped_at

CAP_S = 10.0


capped = capped_at(CAP_S)


@dataclasses.dataclass
class Env:
    store: FakeJobStore
    blobs: FakeBlobStore
    events: RecordingEvents
    intake: Intake
    user: User
    enqueued: list[SpeechJob] = dataclasses.field(default_factory=list)
    enqueue_errors: list[Exception] = dataclasses.field(default_factory=list)
    counted: list[str] = dataclasses.field(default_factory=list)

    async def finish(self, job_id: str, data: bytes = b"ID3-audio") -> str:
        """Run a job to success as the TTS pool would (audio under its cache key)."""
        job = await self.store.start_job(job_id)
        assert job is not None and job.cache_key
        path = await self.blobs.put(job.cache_key, "mp3", data)
        done = await self.store.finish_job(job_id, NewAudio(
            owner=job.owner, cache_key=job.cache_key, format=job.output_format,
            content_type=parse_format(job.output_format).content_type, duration_s=1.0,
            size=len(data), path=path,
        ))
        assert done.audio_id is not None
        return done.audio_id


@pytest.fixture
async def env() -> Env:
    store, blobs, provider = FakeJobStore(), FakeBlobStore(), FakeProvider(voices=TEST_VOICES)
    events = RecordingEvents()
    user, _ = await store.create_user("alice")
    holder: dict[str, Env] = {}

    async def enqueue(job: SpeechJob) -> None:
        await trio.lowlevel.checkpoint()
        if holder["env"].enqueue_errors:
            raise holder["env"].enqueue_errors.pop(0)
        holder["env"].enqueued.append(job)

    def count(name: str) -> None:
        holder["env"].counted.append(name)

    intake = Intake(
        Settings(max_text_chars=100, db_timeout_s=1.0), store=store, blobs=blobs,
        provider=provider, voices=VoiceCatalog(store, provider), enqueue=enqueue,
        events=events, count=count,
    )
    holder["env"] = Env(store, blobs, events, intake, user)
    return holder["env"]


@capped
async def test_a_repeated_text_is_answered_from_the_cache_and_never_enqueued(env: Env) -> None:
    first, created = await env.intake.submit(JobRequest(text="Read me once."), env.user)
    assert created and first.status is JobStatus.queued and not first.cached
    audio_id = await env.finish(first.id)

    again, created = await env.intake.submit(JobRequest(text="  Read me   once. "), env.user)

    assert created and again.id != first.id
    assert again.status is JobStatus.succeeded and again.cached
    assert again.audio_id == audio_id  # the same audio, not generated again
    assert [job.job_id for job in env.enqueued] == [first.id]  # only the first was enqueued
    assert env.counted == ["api_cache_misses", "api_cache_hits"]
    assert [(e.kind, e.subject, e.data.get("cached")) for e in env.events.events] == [
        (EventKind.tts_creation, first.id, None),
        (EventKind.job_queued, first.id, None),
        (EventKind.tts_creation, again.id, None),
        (EventKind.job_succeeded, again.id, True),
    ]
    # the seed's TTS_CREATION names the request: voice and characters
    creation = env.events.events[0].data
    assert creation["voice_id"] == first.voice_id
    assert creation["characters"] == first.characters


@capped
async def test_an_enqueue_failure_discards_the_job_and_raises(env: Env) -> None:
    env.enqueue_errors.append(QueueUnavailable("redis is away"))
    request = JobRequest(text="Nobody will hear this.", idempotency_key="k1")

    with pytest.raises(QueueUnavailable):
        await env.intake.submit(request, env.user)

    assert env.store.jobs == {} and env.store.by_idempotency_key == {}  # nothing half-accepted
    assert env.enqueued == [] and env.events.events == []
    # the client's retry with the same key is a fresh job, accepted this time
    job, created = await env.intake.submit(request, env.user)
    assert created and job.status is JobStatus.queued
    assert list(env.store.jobs) == [job.id]


@capped
async def test_an_idempotent_repeat_returns_the_same_job(env: Env) -> None:
    request = JobRequest(text="Once upon a time.", idempotency_key="story-1")
    job, created = await env.intake.submit(request, env.user)
    assert created

    again, created = await env.intake.submit(request, env.user)

    assert not created and again.id == job.id and again.status is JobStatus.queued
    assert len(env.store.jobs) == 1
    assert [j.job_id for j in env.enqueued] == [job.id, job.id]  # re-enqueued: heals a lost XADD
    # announced once
    assert [e.kind for e in env.events.events] == [EventKind.tts_creation, EventKind.job_queued]


@capped
async def test_jobs_submitted_together_are_enqueued_in_their_order(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    """A storybook's lines are accepted at once but must reach the stream in reading order."""
    create = env.store.create_job

    async def earlier_is_slower(job: NewJob, **kwargs: Any) -> tuple[Job, bool]:
        await trio.sleep(0.01 * (5 - int(job.text[-1])))  # "Line 0" is created last
        return await create(job, **kwargs)

    env.store.create_job = earlier_is_slower  # type: ignore[method-assign]
    texts = [f"Line {i}" for i in range(5)]

    results = await env.intake.submit_in_order(
        [JobRequest(text=t) for t in texts], env.user, lane=Lane.batch, quota=False,
        book_id="book-1",
    )

    assert [r[0].text for r in results if not isinstance(r, ChorusError)] == texts
    assert [j.text for j in env.enqueued] == texts
    assert {j.book_id for j in env.enqueued} == {"book-1"}  # each entry names its book


@capped
async def test_nothing_is_enqueued_after_a_job_that_could_not_be_accepted_now(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    create = env.store.create_job

    async def away_for_line_1(job: NewJob, **kwargs: Any) -> tuple[Job, bool]:
        if job.text == "Line 1":
            raise StoreUnavailable("database away")
        if job.text == "A":
            await trio.sleep(0.05)  # "B" has failed long before "A" is enqueued
        return await create(job, **kwargs)

    env.store.create_job = away_for_line_1  # type: ignore[method-assign]

    results = await env.intake.submit_in_order(
        [JobRequest(text=f"Line {i}") for i in range(4)], env.user
    )

    assert isinstance(results[1], StoreUnavailable)
    assert all(isinstance(r, QueueUnavailable) for r in results[2:])  # would get ahead of 1
    assert [j.text for j in env.enqueued] == ["Line 0"]
    assert [j.text for j in env.store.jobs.values()] == ["Line 0"]  # the later rows undone
    # a job that can never be made (an unknown voice) does not hold back the ones after it
    env.enqueued.clear()
    results = await env.intake.submit_in_order(
        [JobRequest(text="A"), JobRequest(text="B", voice_id="nope"), JobRequest(text="C")],
        env.user,
    )
    assert isinstance(results[1], UnknownVoice)
    assert [j.text for j in env.enqueued] == ["A", "C"]


@capped
async def test_lines_submitted_together_look_each_voice_up_once(env: Env) -> None:
    """A window of a book's lines speaks with a few voices: each is looked up once (the first
    line is not held up by its neighbours' identical look-ups), its error shared too."""
    requests = [JobRequest(text=f"Line {i}", voice_id="en-1" if i % 2 else "en-2")
                for i in range(6)]
    requests += [JobRequest(text="Gone 1", voice_id="nope"), JobRequest(text="Gone 2",
                                                                     voice_id="nope")]

    results = await env.intake.submit_in_order(requests, env.user)

    assert [j.voice_id for j in env.enqueued] == [r.voice_id for r in requests[:6]]
    assert all(isinstance(r, UnknownVoice) for r in results[6:])
    assert env.store.calls["get_voice"] == 3  # en-1, en-2, nope


@capped
async def test_a_clip_found_is_remembered_for_a_while_then_looked_for_again(
    env: Env, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hit looks for its clip (row and file) once per ``HIT_TTL_S``, not on every request;
    a clip removed by hand is generated again once that time has passed."""
    monkeypatch.setattr(intake_module, "HIT_TTL_S", 2.0)  # within the test's cap
    first, _ = await env.intake.submit(JobRequest(text="Say it often."), env.user)
    audio_id = await env.finish(first.id)
    looked: list[str] = []
    exists = env.blobs.exists

    async def counting(path: str) -> bool:
        looked.append(path)
        return await exists(path)

    env.blobs.exists = counting  # type: ignore[method-assign]
    finds: list[str] = []
    find_audio = env.store.find_audio

    async def counting_finds(owner: str, cache_key: str) -> Any:
        finds.append(cache_key)
        return await find_audio(owner, cache_key)

    env.store.find_audio = counting_finds  # type: ignore[method-assign]
    hits = [(await env.intake.submit(JobRequest(text="Say it often."), env.user))[0]
            for _ in range(3)]
    assert all(h.cached and h.audio_id == audio_id for h in hits)
    assert len(looked) == 1 and len(finds) == 1

    env.blobs.files.clear()  # the file is removed behind Chorus's back
    await trio.sleep(1.0)
    within, _ = await env.intake.submit(JobRequest(text="Say it often."), env.user)
    assert within.cached and len(looked) == len(finds) == 1  # trusted until the TTL ends
    await trio.sleep(1.5)
    again, _ = await env.intake.submit(JobRequest(text="Say it often."), env.user)
    assert again.status is JobStatus.queued and not again.cached  # generated again
    assert [job.job_id for job in env.enqueued] == [first.id, again.id]
    assert len(looked) == len(finds) == 2

"""Server-sent events over real HTTP (hypercorn) on the real event bus (embedded Valkey), and
job lifecycle events from a whole running service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import trio

from actors.pipeline.intake import Intake
from protocols.domain.voices import VoiceCatalog
from protocols.errors import ProviderError
from protocols.events import EventKind, job_event
from protocols.messages import NewJob, SynthesisRequest, SynthesisResult
from protocols.providers.fake import FakeProvider
from protocols.redis.event_bus import RedisEventBus, open_event_bus
from protocols.redis.keys import Keys
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore
from tests.support.harness import make_settings, running_service, total_queue_check
from web.app import serve
from web.client import SSEvent, iter_sse
from web.context import WebContext

CAP_S = 10.0


@dataclass
class SSEServer:
    base: str
    bus: RedisEventBus
    store: FakeJobStore
    keys: dict[str, str]  # user id -> api key
    alice: str
    bob: str
    stop: trio.Event

    def client(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {self.keys[user]}"},
            timeout=httpx.Timeout(5.0),
        )

    async def publish(self, owner: str, subject: str, kind: EventKind, **data: Any) -> str:
        (event_id,) = await self.bus.publish([job_event(kind, subject, owner, **data)])
        return event_id

    async def new_job(self, owner: str) -> str:
        job, _ = await self.store.create_job(
            NewJob(id=f"job_{uuid.uuid4().hex[:12]}", owner=owner, text="hi", voice_id="en-1",
                   language=None, output_format="mp3_44100_128", idempotency_key=None,
                   request_hash="h")
        )
        return job.id


@asynccontextmanager
async def sse_server(redis_url: str, **overrides: Any) -> AsyncIterator[SSEServer]:
    settings = Settings(read_block_ms=100, shutdown_grace_s=2.0, **overrides)
    keys = Keys(f"t{uuid.uuid4().hex[:10]}")
    store = FakeJobStore()
    alice, alice_key = await store.create_user("alice")
    bob, bob_key = await store.create_user("bob")
    stop = trio.Event()

    async def submit(job: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def readiness() -> dict[str, bool]:
        await trio.lowlevel.checkpoint()
        return {}

    async with open_event_bus(redis_url, keys, stream_timeout=4.0, max_connections=8) as bus:
        blobs, provider = FakeBlobStore(), FakeProvider(voices=TEST_VOICES)
        intake = Intake(settings, store=store, blobs=blobs, provider=provider,
                        voices=VoiceCatalog(store, provider), enqueue=submit)
        ctx = WebContext(
            settings=settings, store=store, blobs=blobs, provider=provider,
            intake=intake, readiness=readiness, event_log=bus, stopping=stop,
        )
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve, ctx, host="127.0.0.1", port=0, shutdown_trigger=stop.wait)
            )
            try:
                yield SSEServer(binds[0], bus, store, {alice.id: alice_key, bob.id: bob_key},
                                alice.id, bob.id, stop)
            finally:
                stop.set()


@asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **kwargs: Any) -> AsyncIterator[Any]:
    async with client.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield iter_sse(response.aiter_lines())


async def take(events: Any, n: int) -> list[SSEvent]:
    out = []
    async for event in events:
        out.append(event)
        if len(out) == n:
            break
    return out


# --- /v1/events ---------------------------------------------------------------------------------


async def test_events_are_only_the_callers_and_resume_after_last_event_id(redis_url) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url) as srv, srv.client(srv.alice) as http:
            before = [await srv.publish(srv.alice, f"job_{i}", EventKind.job_queued)
                      for i in range(4)]
            await srv.publish(srv.bob, "job_bob", EventKind.job_queued)
            # resume after the second: exactly the two after it, then live ones, none of bob's
            headers = {"Last-Event-ID": before[1]}
            async with sse(http, "/v1/events", headers=headers) as events:
                live = [await srv.publish(srv.bob, "job_bob", EventKind.job_running),
                        await srv.publish(srv.alice, "job_9", EventKind.job_succeeded,
                                          audio_id="aud_1")]
                got = await take(events, 3)
            assert [e.id for e in got] == [before[2], before[3], live[1]]
            assert [e.event for e in got] == ["job.queued", "job.queued", "job.succeeded"]
            assert got[2].data == {"id": live[1], "kind": "job.succeeded", "subject": "job_9",
                                   "at": got[2].data["at"], "data": {"audio_id": "aud_1"}}
            # the same with the query parameter and a kinds filter
            path = f"/v1/events?last_event_id={before[0]}&kinds=job.succeeded"
            async with sse(http, path) as events:
                (only,) = await take(events, 1)
            assert only.id == live[1]
            # without Last-Event-ID a stream starts at the present
            async with sse(http, "/v1/events") as events:
                fresh = await srv.publish(srv.alice, "job_10", EventKind.job_failed)
                (first,) = await take(events, 1)
            assert first.id == fresh


async def test_bad_requests_are_problems(redis_url) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url) as srv, srv.client(srv.alice) as http:
            r = await http.get("/v1/events", headers={"Last-Event-ID": "yesterday"})
            assert r.status_code == 400 and r.json()["code"] == "invalid_last_event_id"
            r = await http.get("/v1/events?last_event_id=1-2-3")
            assert r.status_code == 400
            r = await http.get("/v1/events?kinds=job.succeeded,job.exploded")
            assert r.status_code == 422 and "job.exploded" in r.json()["detail"]
            async with httpx.AsyncClient(base_url=srv.base) as anonymous:
                r = await anonymous.get("/v1/events")
            assert r.status_code == 401
            bobs_job = await srv.new_job(srv.bob)
            r = await http.get(f"/v1/jobs/{bobs_job}/events")
            assert r.status_code == 404 and r.json()["code"] == "not_found"
            r = await http.get("/v1/jobs/job_nope/events")
            assert r.status_code == 404


async def test_stream_cap_is_503_and_slots_come_back(redis_url) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url, sse_max_streams=1) as srv, srv.client(srv.alice) as http:
            async with sse(http, "/v1/events") as events:
                r = await http.get("/v1/events")
                assert r.status_code == 503 and r.json()["code"] == "too_many_streams"
                assert r.headers["retry-after"] == "10"
                await srv.publish(srv.alice, "job_1", EventKind.job_queued)
                await take(events, 1)
            for _ in range(3):  # the closed stream's slot is free again, every time
                async with sse(http, "/v1/events") as events:
                    await srv.publish(srv.alice, "job_2", EventKind.job_queued)
                    await take(events, 1)


async def test_heartbeat_and_streams_end_when_the_server_stops(redis_url) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url, sse_heartbeat_s=0.05) as srv:
            async with srv.client(srv.alice) as http, http.stream("GET", "/v1/events") as r:
                lines = r.aiter_lines()
                seen = []
                async for line in lines:
                    seen.append(line)
                    if line.startswith(":"):
                        break
                assert seen[0] == "retry: 2000"
                stopped_at = trio.current_time()
                srv.stop.set()
                async for _ in lines:  # the body ends (not cut by the graceful timeout)
                    pass
                assert trio.current_time() - stopped_at < 1.5


# --- /v1/jobs/<id>/events -----------------------------------------------------------------------


async def test_job_events_start_with_its_state_and_end_after_the_terminal_event(
    redis_url,
) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url) as srv, srv.client(srv.alice) as http:
            job_id = await srv.new_job(srv.alice)
            other = await srv.new_job(srv.alice)
            async with sse(http, f"/v1/jobs/{job_id}/events") as events:
                (state,) = await take(events, 1)
                assert (state.id, state.event, state.data["data"]["status"]) == (
                    None, "job.queued", "queued")
                await srv.publish(srv.alice, other, EventKind.job_running)  # not this job's
                running = await srv.publish(srv.alice, job_id, EventKind.job_running)
                done = await srv.publish(srv.alice, job_id, EventKind.job_succeeded)
                await srv.publish(srv.alice, job_id, EventKind.tts_created)  # after the end
                rest = [e async for e in events]  # the stream ends by itself
            assert [(e.id, e.event) for e in rest] == [(running, "job.running"),
                                                      (done, "job.succeeded")]
            # resumed after the running event: only what came after, then the end
            async with sse(http, f"/v1/jobs/{job_id}/events",
                           headers={"Last-Event-ID": running}) as events:
                # the fake store still says queued: the stream reads on from the id
                assert [e.id async for e in events] == [done]
            # a job already terminal when connecting: its state at once, then the end
            await srv.store.start_job(other)
            await srv.store.fail_job(other, "provider_error", "nope")
            async with sse(http, f"/v1/jobs/{other}/events") as events:
                (final,) = [e async for e in events]
            assert final.event == "job.failed"
            assert final.data["data"]["error"] == {"code": "provider_error", "message": "nope"}


async def test_job_stream_rechecks_the_job_when_an_event_was_lost(redis_url) -> None:
    with trio.fail_after(CAP_S):
        async with sse_server(redis_url, sse_heartbeat_s=0.05) as srv, \
                srv.client(srv.alice) as http:
            job_id = await srv.new_job(srv.alice)
            async with sse(http, f"/v1/jobs/{job_id}/events") as events:
                await take(events, 1)  # queued
                await srv.store.start_job(job_id)
                await srv.store.fail_job(job_id, "provider_error", "gone")  # no event published
                rest = [e async for e in events]
            assert [e.event for e in rest] == ["job.failed"]


# --- a whole service ----------------------------------------------------------------------------


class Troubled(FakeProvider):
    """'fail' fails for good (job.failed); 'poison' crashes the actor on every delivery."""

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        if request.text == "fail":
            raise ProviderError("the provider refuses")
        if request.text == "poison":
            raise RuntimeError("the provider chokes")
        return await super().synthesize(request)


async def test_sse_client_sees_every_job_of_a_burst_finish_without_polling(
    redis_url, store, tmp_path
) -> None:
    settings = make_settings(tmp_path, max_deliveries=1)
    with trio.fail_after(30):
        async with running_service(redis_url=redis_url, store=store, settings=settings,
                                   provider=Troubled()) as svc:
            timeout = httpx.Timeout(10.0)
            async with svc.client.stream("GET", "/v1/events", timeout=timeout) as r:
                assert r.status_code == 200
                events = iter_sse(r.aiter_lines())
                texts = [f"line {i}" for i in range(20)] + ["fail", "poison"]
                async with trio.open_nursery() as nursery:
                    for text in texts:
                        nursery.start_soon(svc.submit, text)
                by_job: dict[str, list[str]] = {}
                final = {}
                with trio.fail_after(15):
                    async for event in events:
                        by_job.setdefault(event.data["subject"], []).append(event.event)
                        if event.event in ("job.succeeded", "job.failed", "job.dead"):
                            final[event.data["subject"]] = event.event
                            if len(final) == len(texts):
                                break
        assert set(final) == set(svc.accepted) and len(svc.accepted) == len(texts)
        jobs = {job_id: await store.get_job(job_id) for job_id in svc.accepted}
        outcome = {jobs[i].text: final[i] for i in final}
        assert outcome.pop("fail") == "job.failed" and outcome.pop("poison") == "job.dead"
        assert set(outcome.values()) == {"job.succeeded"}
        for job_id, kinds in by_job.items():
            assert kinds[:2] == ["tts.creation", "job.queued"], kinds  # accepted, then queued
            if final[job_id] == "job.succeeded":
                assert kinds[-2:] in (["job.succeeded", "tts.created"],
                                      ["job.running", "job.succeeded"]), kinds
                assert "job.running" in kinds
        failed = next(i for i in final if jobs[i].text == "fail")
        assert "tts.failed" in by_job[failed] or len(by_job[failed]) >= 3
        assert svc.service.events.statistics().dropped == 0
        await total_queue_check(store, redis_url, settings, svc.accepted)

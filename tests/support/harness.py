"""Test harness: a real Service (supervisor, actors, HTTP on 127.0.0.1:0) on the session's
embedded Valkey and a fresh Postgres database, and the Jepsen-style total-queue check."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.service import Role, Service
from actors.supervision.supervisor import SupervisorEvent
from protocols.messages import JobStatus
from protocols.ports import JobStore, SpeechProvider
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from run import build_service

FAST = dict(
    lease_s=3.0, reclaim_interval_s=0.3, read_block_ms=200, shutdown_grace_s=3.0,
    submit_timeout_s=2.0, restart_intensity=20, restart_period_s=10.0, redis_timeout_s=2.0,
)


@dataclass
class Running:
    service: Service
    client: httpx.AsyncClient
    api_key: str
    events: list[SupervisorEvent] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # job ids answered 200/202

    async def submit(self, text: str, **body: Any) -> httpx.Response:
        r = await self.client.post("/v1/jobs", json={"text": text, **body})
        if r.status_code in (200, 202):
            self.accepted.append(r.json()["id"])
        return r

    async def wait_done(
        self, job_ids: Iterable[str], limit_s: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Poll until every job is terminal (real clock; bounded); ``headers``: another user."""
        jobs: dict[str, Any] = {}
        with trio.fail_after(limit_s):
            for job_id in job_ids:
                while True:
                    r = await self.client.get(f"/v1/jobs/{job_id}", headers=headers)
                    assert r.status_code == 200, r.text
                    jobs[job_id] = r.json()
                    if jobs[job_id]["status"] in ("succeeded", "failed", "dead", "cancelled"):
                        break
                    await trio.sleep(0.02)
        return jobs


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=str(tmp_path), port=0, redis_prefix=f"t{uuid.uuid4().hex[:10]}",
        consumer="worker-a", **FAST,
    )
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_service(
    *,
    redis_url: str,
    store: JobStore,
    settings: Settings,
    provider: SpeechProvider | None = None,
    role: Role = Role.serve,
) -> AsyncIterator[Running]:
    events: list[SupervisorEvent] = []
    service = build_service(
        settings, role, redis_url=redis_url, store=store, provider=provider or FakeProvider(),
        on_event=events.append,
    )
    _, key = await store.create_user(f"user-{uuid.uuid4().hex[:6]}")
    async with service.running(stop_limit_s=15):
        base = service.http_binds[0] if service.http_binds else "http://127.0.0.1:9"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            yield Running(service, client, key, events)


async def total_queue_check(
    store: JobStore, redis_url: str, settings: Settings, accepted: Iterable[str]
) -> dict[str, int]:
    """Every accepted job ended exactly once: succeeded with its audio, or dead with exactly one
    dead letter, or failed with a typed error; nothing pending or queued after the drain."""
    keys = Keys(settings.redis_prefix)
    tally = {"succeeded": 0, "dead": 0, "failed": 0}
    async with open_queue(redis_url, keys, stream_timeout=5) as queue:
        dead = await queue.dead_letters(10_000)
        dead_by_job: dict[str, int] = {}
        for d in dead:
            dead_by_job[d.job.job_id] = dead_by_job.get(d.job.job_id, 0) + 1
        accepted = list(dict.fromkeys(accepted))
        for job_id in accepted:
            job = await store.get_job(job_id)
            assert job is not None, f"accepted job {job_id} lost"
            assert job.status.terminal, f"job {job_id} still {job.status}"
            if job.status == JobStatus.succeeded:
                assert job.audio_id, job_id
                audio = await store.get_audio(job.audio_id, job.owner)
                assert audio is not None and audio.size > 0
                assert dead_by_job.get(job_id, 0) == 0, f"{job_id} succeeded and dead-lettered"
            elif job.status == JobStatus.dead:
                assert dead_by_job.get(job_id, 0) >= 1, f"dead job {job_id} has no dead letter"
            else:
                assert job.error_code, f"failed job {job_id} has no typed error"
            tally[job.status.value] += 1
        unknown = set(dead_by_job) - set(accepted)
        assert not unknown, f"dead letters for unknown jobs: {unknown}"
        assert await queue.pending_count() == 0, "entries still pending after the drain"
        assert await queue.backlog() == 0, "entries still in the stream after the drain"
    return tally

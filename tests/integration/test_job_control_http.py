"""``GET /v1/jobs`` and ``DELETE /v1/jobs/<id>`` on a live Chorus (real Valkey and Postgres):
pages of the caller's own jobs, a queued job withdrawn (its reservation freed, its event seen
by an SSE follower, its entry acked by a worker without a provider call, nothing charged), a
running or finished job answered 409, another user's job 404."""

from __future__ import annotations

import httpx
import trio

from actors.service import Role
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from tests.support.harness import make_settings, running_service
from web.client import iter_sse

CAP_S = 60


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_jobs_list_newest_first_in_pages_with_filters(redis_url, store, tmp_path) -> None:
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            ids = []
            for i in range(5):
                r = await svc.submit(f"Listed job number {i}.")
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            await svc.wait_done(ids)
            newest_first = ids[::-1]
            seen, cursor = [], None
            for _ in range(3):
                params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                r = await svc.client.get("/v1/jobs", params=params)
                assert r.status_code == 200, r.text
                page = r.json()
                seen += [job["id"] for job in page["jobs"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == newest_first and cursor is None
            r = await svc.client.get("/v1/jobs", headers={"Origin": "https://app.example"})
            assert "access-control-allow-origin" not in r.headers  # CORS is off by default
            first = r.json()["jobs"][0]
            assert first["status"] == "succeeded" and first["audio_url"].startswith("/v1/audio/")
            assert "text" not in first and "owner" not in first
            r = await svc.client.get("/v1/jobs", params={"status": "failed"})
            assert r.json() == {"jobs": [], "next_cursor": None}
            r = await svc.client.get("/v1/jobs", params={"created_after": "2999-01-01T00:00:00Z"})
            assert r.json()["jobs"] == []
            r = await svc.client.get("/v1/jobs", params={"created_after": "2000-01-01"})
            assert len(r.json()["jobs"]) == 5
            # every parameter is checked: typed problems, never a silent default
            for params, code in [
                ({"status": "done"}, "invalid_input"), ({"limit": 0}, "invalid_input"),
                ({"limit": "many"}, "invalid_input"), ({"limit": 101}, "invalid_input"),
                ({"created_after": "yesterday"}, "invalid_input"),
                ({"cursor": "not a cursor"}, "invalid_cursor"),
                ({"cursor": "Zm9v"}, "invalid_cursor"), ({"page": 2}, "unknown_parameter"),
            ]:
                r = await svc.client.get("/v1/jobs", params=params)
                assert r.status_code in (400, 422), (params, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == code, (params, r.text)
            # another user sees none of them
            _, bob_key = await store.create_user("bob")
            r = await svc.client.get("/v1/jobs", headers=bearer(bob_key))
            assert r.json() == {"jobs": [], "next_cursor": None}
            assert (await svc.client.get("/v1/jobs", headers={"Authorization": ""})).status_code \
                == 401


async def test_cancel_a_queued_job_frees_its_quota_and_no_worker_generates_it(
    redis_url, store, tmp_path
) -> None:
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    keep, drop = "Keep this one, please.", ["Drop the first.", "Drop the second."]
    with trio.fail_after(CAP_S):
        # an API-only process: the jobs wait in the (interactive) stream, no worker reads them
        async with running_service(redis_url=redis_url, store=store, settings=settings,
                                   role=Role.api) as api:
            alice = await store.authenticate(api.api_key)
            await store.set_quota(alice.name, 200)
            kept = (await api.submit(keep)).json()["id"]
            dropped = [(await api.submit(text)).json()["id"] for text in drop]
            assert (await store.usage(alice.id)).reserved == len(keep) + sum(map(len, drop))
            _, bob_key = await store.create_user("bob")
            r = await api.client.delete(f"/v1/jobs/{dropped[0]}", headers=bearer(bob_key))
            assert r.status_code == 404 and r.json()["code"] == "not_found"
            async with api.client.stream("GET", "/v1/events",
                                         timeout=httpx.Timeout(10.0)) as stream:
                assert stream.status_code == 200
                for job_id in dropped:
                    r = await api.client.delete(f"/v1/jobs/{job_id}")
                    assert r.status_code == 200, r.text
                    assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
                followed = []
                async for event in iter_sse(stream.aiter_lines()):
                    if event.event == "job.cancelled":
                        followed.append(event.data["subject"])
                        if len(followed) == 2:
                            break
            assert followed == dropped
            again = await api.client.delete(f"/v1/jobs/{dropped[0]}")  # a repeat: the same
            assert again.status_code == 200 and again.json()["status"] == "cancelled"
            assert (await store.usage(alice.id)).reserved == len(keep)  # freed at once
            r = await api.client.get("/v1/jobs", params={"status": "cancelled"})
            assert [job["id"] for job in r.json()["jobs"]] == dropped[::-1]

        # a worker now reads all three entries: it generates only the kept one, acks the rest
        async with running_service(redis_url=redis_url, store=store, settings=settings,
                                   provider=provider) as svc:
            alice_h = bearer(api.api_key)
            done = await svc.wait_done([kept], headers=alice_h)
            assert done[kept]["status"] == "succeeded"
            async with open_queue(redis_url, Keys(settings.redis_prefix), stream_timeout=5) as q:
                while True:  # the cancelled entries are acked too (polled: real servers)
                    if not (await q.backlog() or await q.pending_count()):
                        break
                    await trio.sleep(0.02)
            assert [req.text for req in provider.requests] == [keep]
            usage = await store.usage(alice.id)
            assert (usage.used, usage.reserved, usage.jobs_charged) == (len(keep), 0, 1)
            r = await svc.client.delete(f"/v1/jobs/{kept}", headers=alice_h)
            assert r.status_code == 409 and r.json()["code"] == "already_finished"
            for job_id in dropped:
                job = await store.get_job(job_id)
                assert job.status.value == "cancelled" and job.audio_id is None

            # a running job finishes: 409 job_running, then it succeeds
            provider.gate = trio.Event()
            running = (await svc.submit("Hold this one a moment.")).json()["id"]
            while True:  # held inside the provider call, so started
                if (await store.get_job(running)).status.value == "running":
                    break
                await trio.sleep(0.02)
            r = await svc.client.delete(f"/v1/jobs/{running}")
            assert r.status_code == 409 and r.json()["code"] == "job_running"
            provider.gate.set()
            assert (await svc.wait_done([running]))[running]["status"] == "succeeded"

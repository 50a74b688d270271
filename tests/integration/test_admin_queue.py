"""The admin queue routes on a live Chorus (real Valkey, Postgres, supervisor and HTTP):
``GET /v1/admin/overview`` and ``POST /v1/admin/dead-letters/<id>/redrive``."""

from __future__ import annotations

import httpx
import trio

from protocols.providers.fake import FakeProvider
from tests.support.harness import make_settings, running_service, total_queue_check

LIMIT_S = 40


async def poll(client: httpx.AsyncClient, path: str, done, what: str) -> dict:  # type: ignore[no-untyped-def]
    """GET ``path`` until ``done(json)`` (real clock: the state is in other tasks)."""
    with trio.move_on_after(20):
        while True:
            body = (await client.get(path)).json()
            if done(body):
                return body
            await trio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_only_admins_see_the_queue_or_redrive(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(LIMIT_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            r = await svc.client.get("/v1/admin/overview")
            assert r.status_code == 403 and r.json()["code"] == "forbidden"
            r = await svc.client.post("/v1/admin/dead-letters/1-0/redrive")
            assert r.status_code == 403
            r = await svc.client.get("/v1/admin/overview", headers={"Authorization": ""})
            assert r.status_code == 401


async def test_overview_counts_and_a_dead_letter_redriven_from_http(redis_url, store, tmp_path):
    provider = FakeProvider()
    provider.script.append(RuntimeError("the provider chokes"))  # one crash of an actor
    settings = make_settings(tmp_path, max_deliveries=1)
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            _, admin_key = await store.create_user("ops", admin=True)
            admin = {"Authorization": f"Bearer {admin_key}"}
            poison = (await svc.submit("the first line dies")).json()["id"]
            await poll(svc.client, f"/v1/jobs/{poison}", lambda j: j["status"] == "dead",
                       "the crashed job to be dead-lettered")
            assert (await svc.submit("spoken twice")).status_code == 202
            (done,) = (await svc.wait_done(svc.accepted[-1:])).values()
            assert done["status"] == "succeeded"
            again = await svc.submit("spoken twice")
            assert again.status_code == 200 and again.json()["cached"] is True

            r = await svc.client.get("/v1/admin/overview", headers=admin)
            assert r.status_code == 200, r.text
            o = r.json()
            assert [lane["lane"] for lane in o["lanes"]] == ["interactive", "batch"]
            assert all(lane["length"] == 0 and lane["pending"] == 0 for lane in o["lanes"])
            assert "worker-a" in {c["name"] for c in o["consumers"]}
            assert o["dead_letters"] == 1
            (letter,) = o["recent_dead"]
            assert letter["job_id"] == poison and letter["lane"] == "interactive"
            assert "the provider chokes" in letter["reason"]
            assert o["cache"] == {"window_s": 86400.0, "jobs": 3, "cached": 1,
                                  "hit_rate": round(1 / 3, 4)}
            assert o["jobs_by_status"] == {"dead": 1, "succeeded": 2}
            assert o["slots"] == {"provider": "fake", "in_use": 0,
                                  "limit": settings.provider_concurrency}
            restarted = {c["id"]: c["restarts"] for c in o["supervision"]["children"]}
            assert sum(n for cid, n in restarted.items() if cid.startswith("tts-")) == 1
            assert o["supervision"]["total_restarts"] == 1
            assert o["role"] == "serve"

            r = await svc.client.post(f"/v1/admin/dead-letters/{letter['id']}/redrive",
                                      headers=admin)
            assert r.status_code == 200 and r.json() == {"redriven": [poison]}
            (healed,) = (await svc.wait_done([poison])).values()
            assert healed["status"] == "succeeded"
            r = await svc.client.post(f"/v1/admin/dead-letters/{letter['id']}/redrive",
                                      headers=admin)
            assert r.status_code == 404
            r = await svc.client.post("/v1/admin/dead-letters/%00/redrive", headers=admin)
            assert r.status_code == 422 and r.json()["code"] == "invalid_input"
            o = (await svc.client.get("/v1/admin/overview", headers=admin)).json()
            assert o["dead_letters"] == 0 and o["recent_dead"] == []
        await total_queue_check(store, redis_url, settings, svc.accepted)

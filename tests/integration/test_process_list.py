"""The deployment's process list on the real Valkey: an ``api`` Service's overview shows a
``worker`` Service's supervisor restarts (a crash provoked in the worker's TTS pool), a worker
that dies without a word ages out, an ordered stop leaves the list at once; and the adapter's
beats are totals (written again, never doubled), its dead entries dropped when listed."""

from __future__ import annotations

import httpx
import trio

from protocols.faults import FaultPlan
from protocols.processes import ProcessInfo
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.processes import open_processes
from run import build_service
from tests.support.harness import make_settings, running_service

LIMIT_S = 40


async def wait_for(client: httpx.AsyncClient, headers: dict[str, str], done, what: str) -> dict:  # type: ignore[no-untyped-def]
    """GET the overview until ``done(overview)`` (real clock: the state is in other tasks)."""
    with trio.move_on_after(15):
        while True:
            r = await client.get("/v1/admin/overview", headers=headers)
            assert r.status_code == 200, r.text
            if done(r.json()):
                return r.json()
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def workers(o: dict) -> list[dict]:
    return [p for p in o["processes"] if p["role"] == "worker"]


async def test_the_api_shows_a_workers_restarts_and_a_dead_worker_ages_out(
    redis_url, store, tmp_path
):
    plan = FaultPlan(12).add("tts.before_synth", RuntimeError("injected: a worker's actor dies"))
    api_settings = make_settings(tmp_path / "api", process_heartbeat_s=0.5)
    prefix = api_settings.redis_prefix
    worker_settings = make_settings(tmp_path / "worker", redis_prefix=prefix, faults=plan,
                                    consumer="worker-r", process_heartbeat_s=0.5)
    keys = Keys(prefix)
    _, admin_key = await store.create_user("ops", admin=True)
    admin = {"Authorization": f"Bearer {admin_key}"}
    worker = build_service(worker_settings, "worker", redis_url=redis_url, store=store,
                           provider=FakeProvider())
    dies = trio.CancelScope()  # the worker's death: no ordered stop, no last word

    async def run_worker(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with dies:
            await worker.run(task_status=task_status)

    with trio.fail_after(LIMIT_S):
        async with (
            running_service(redis_url=redis_url, store=store, settings=api_settings,
                            role="api") as api,  # type: ignore[arg-type]
            trio.open_nursery() as nursery,
        ):
            await nursery.start(run_worker)
            r = await api.submit("Spoken by the worker, after one crash.")
            assert r.status_code == 202, r.text
            (job,) = (await api.wait_done(api.accepted)).values()
            assert job["status"] == "succeeded" and plan.fired == ["tts.before_synth"]

            o = await wait_for(api.client, admin, lambda o: any(
                p["restarts"] for p in workers(o)), "the worker's restart in the list")
            (row,) = workers(o)
            (crashed,) = [c["id"] for c in row["children"]]
            assert row["consumer"] == "worker-r" and row["current"] is False
            assert row["restarts"] == 1 and crashed.startswith("tts-")
            assert row["children"] == [{"supervisor": "tts-pool", "id": crashed, "restarts": 1}]
            assert row["id"] == worker.reporter.info.id and row["pid"] == worker.reporter.info.pid
            assert row["started_at"] <= row["last_seen"]
            (me,) = [p for p in o["processes"] if p["role"] == "api"]
            assert me["current"] is True and me["restarts"] == 0 and me["consumer"] == ""
            # the api's own tree is still shown in detail, and it restarted nothing
            assert o["supervision"]["total_restarts"] == 0

            dies.cancel()  # the worker dies: listed until it ages out (3 heartbeats)
            await wait_for(api.client, admin, lambda o: workers(o) == [],
                           "the dead worker to age out")
            seen = await wait_for(api.client, admin, lambda o: True, "the overview")
            assert [p["role"] for p in seen["processes"]] == ["api"]
        # the api stopped in order: off the list at once
        async with open_processes(redis_url, keys, stream_timeout=2) as registry:
            assert await registry.processes(60) == []


async def test_beats_are_totals_and_dead_entries_are_dropped(redis_url):
    keys = Keys("tproc")
    info = ProcessInfo(id="host-a:7:beef", role="worker", consumer="w", host="host-a", pid=7,
                       started_at=1700000000.25)
    other = ProcessInfo(id="host-b:8:cafe", role="api", consumer="", host="host-b", pid=8,
                        started_at=1700000001.0)
    with trio.fail_after(LIMIT_S):
        async with open_processes(redis_url, keys, stream_timeout=2) as registry:
            client = registry._r
            await client.delete([keys.processes, keys.process(info.id), keys.process(other.id)])
            await registry.beat(info, {"tts-pool/tts-0": 2}, 15.0)
            await registry.beat(info, {"tts-pool/tts-0": 2}, 15.0)  # again: the same totals
            await registry.beat(other, {}, 15.0)
            listed = await registry.processes(15.0)
            assert [p.info for p in listed] == [other, info]  # by role, consumer, host, pid
            assert listed[1].restarts == {"tts-pool/tts-0": 2} and listed[0].restarts == {}
            assert 0 < await client.pttl(keys.process(info.id)) <= 15_000
            assert await client.pttl(keys.processes) > 0

            await client.delete([keys.process(info.id)])  # as if its ttl ran out
            assert [p.info for p in await registry.processes(15.0)] == [other]
            assert await client.smembers(keys.processes) == {other.id.encode()}
            await registry.remove(other.id)
            assert await registry.processes(15.0) == []
            assert await client.exists([keys.processes]) == 0

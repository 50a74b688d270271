"""Observability on a live Chorus (real Valkey and Postgres, HTTP on 127.0.0.1): ``/metrics``
parsed with prometheus-client's own parser, with values that move when jobs run; who may read
it; ``X-Request-ID`` from the request into the job, its events and its log lines; the access
log."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_events_http import sse, take
from tests.support.harness import make_settings, running_service

LIMIT_S = 30.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(base: str, headers: dict[str, str] | None = None) -> Samples:
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        r = await anonymous.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


async def test_metrics_move_as_jobs_run_and_the_request_id_follows_the_job(
    redis_url, store, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO)
    rid = f"trace-{uuid.uuid4().hex[:8]}"
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=make_settings(tmp_path)
        ) as chorus:
            base = chorus.service.http_binds[0]
            before = await scrape(base)  # from loopback, without a key
            first = await chorus.submit("Counted once.", idempotency_key="one")
            second = await chorus.client.post(
                "/v1/jobs", json={"text": "Traced."}, headers={"X-Request-ID": rid}
            )
            assert first.status_code == second.status_code == 202, second.text
            assert second.headers["x-request-id"] == rid
            made = first.headers["x-request-id"]  # none given: one was made
            assert len(made) == 32 and made != rid
            ids = [first.json()["id"], second.json()["id"]]
            jobs = await chorus.wait_done(ids)
            assert [jobs[i]["status"] for i in ids] == ["succeeded", "succeeded"]
            hit = await chorus.submit("Traced.")  # the same audio: a cache hit at submit
            assert hit.status_code == 200 and hit.json()["cached"] is True
            missing = await chorus.client.get("/v1/jobs/job_doesnotexist")
            assert missing.status_code == 404
            assert missing.headers["x-request-id"] == missing.json()["request_id"]
            after = await scrape(base)

            # the job carries the request id, and so do its events
            job = (await chorus.client.get(f"/v1/jobs/{ids[1]}")).json()
            assert job["request_id"] == rid
            assert jobs[ids[0]]["request_id"] == made
            path = "/v1/events?last_event_id=0-0&kinds=job.running,job.succeeded"
            async with sse(chorus.client, path) as events:
                seen = await take(events, 4)
            mine = [e for e in seen if e.data["subject"] == ids[1]]
            assert {e.event for e in mine} == {"job.running", "job.succeeded"}
            assert all(e.data["data"]["request_id"] == rid for e in mine)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("chorus_job_transitions_total", status="queued") == 2
    assert moved("chorus_job_transitions_total", status="running") == 2
    assert moved("chorus_job_transitions_total", status="succeeded") == 3  # + the cache hit
    assert moved("chorus_job_duration_seconds_count", status="succeeded") == 2
    assert moved("chorus_job_queue_wait_seconds_count", lane="interactive") == 2
    assert moved("chorus_provider_calls_total", provider="fake", outcome="ok") == 2
    assert moved("chorus_cache_lookups_total", where="submit", result="miss") == 2
    assert moved("chorus_cache_lookups_total", where="submit", result="hit") == 1
    assert moved("chorus_cache_lookups_total", where="worker", result="miss") == 2
    # routes by their URL rule, not the raw path
    assert moved("chorus_http_requests_total", route="/v1/jobs", method="POST",
                 status="202") == 2
    assert moved("chorus_http_requests_total", route="/v1/jobs/<job_id>", method="GET",
                 status="404") == 1
    assert moved("chorus_http_requests_total", route="/v1/jobs/<job_id>", method="GET",
                 status="200") >= 2
    assert moved("chorus_errors_total", where="http", code="not_found") == 1
    assert not any("job_doesnotexist" in str(labels) for _, labels in after)
    # read from Redis at scrape time
    assert value(after, "chorus_redis_up") == 1
    assert value(after, "chorus_stream_length", lane="interactive") == 0
    assert value(after, "chorus_stream_pending", lane="batch") == 0
    assert value(after, "chorus_dead_letters") == 0
    assert ("chorus_provider_slots_in_use", ()) in after

    # the job's start and finish are logged with its id, duration and request id
    lines = [r for r in caplog.records if getattr(r, "job_id", None) == ids[1]]
    assert [r.getMessage().split()[2] for r in lines] == ["started", "succeeded"]
    assert all(r.request_id == rid for r in lines)
    assert lines[1].duration_s is not None and lines[1].duration_s >= 0
    # the access log: one line per request, with its request id, and never the key
    access = [r for r in caplog.records if r.name == "chorus.access"]
    traced = [r for r in access if r.request_id == rid]
    assert [(r.method, r.path, r.status) for r in traced] == [("POST", "/v1/jobs", 202)]
    assert not any(chorus.api_key in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("header", ["x" * 129, "bad id", "naïve", ""])
def test_a_bad_request_id_is_replaced(header: str) -> None:
    from protocols import tracing

    assert not tracing.valid(header)
    assert tracing.valid(tracing.new_id())
    assert tracing.valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


async def test_request_ids_on_errors_and_bad_ones_replaced(redis_url, store, tmp_path) -> None:
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=make_settings(tmp_path)
        ) as chorus:
            base = chorus.service.http_binds[0]
            async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
                r = await anonymous.get("/v1/jobs/job_x", headers={"X-Request-ID": "kept-1"})
                assert r.status_code == 401
                assert r.headers["x-request-id"] == "kept-1" == r.json()["request_id"]
                r = await anonymous.get("/v1/jobs/job_x", headers={"X-Request-ID": "no way"})
                made = r.headers["x-request-id"]
                assert made != "no way" and len(made) == 32
                r = await anonymous.get("/nowhere")
                assert r.status_code == 404 and len(r.headers["x-request-id"]) == 32
            metrics = await scrape(base)
    assert value(metrics, "chorus_http_requests_total", route="<unmatched>", method="GET",
                 status="404") >= 1


async def _status(base: str, headers: dict[str, str] | None = None) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        return (await http.get("/metrics", headers=headers)).status_code


@pytest.mark.parametrize("mode", ["loopback", "admin", "off"])
async def test_who_may_read_the_metrics(redis_url, store, tmp_path, mode: str) -> None:
    _, admin_key = await store.create_user("metrics-admin", admin=True)
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=make_settings(tmp_path, metrics=mode)
        ) as chorus:
            base = chorus.service.http_binds[0]
            admin = {"Authorization": f"Bearer {admin_key}"}
            user = {"Authorization": f"Bearer {chorus.api_key}"}
            proxied = {"X-Forwarded-For": "203.0.113.9"}
            got: dict[str, Any] = {
                "keyless": await _status(base),
                "proxied": await _status(base, proxied),
                "user": await _status(base, user),
                "admin": await _status(base, admin),
                "bad key": await _status(base, {"Authorization": "Bearer nope"}),
            }
    expected = {
        "loopback": {"keyless": 200, "proxied": 401, "user": 403, "admin": 200, "bad key": 401},
        "admin": {"keyless": 401, "proxied": 401, "user": 403, "admin": 200, "bad key": 401},
        "off": {"keyless": 404, "proxied": 404, "user": 404, "admin": 404, "bad key": 404},
    }[mode]
    assert got == expected

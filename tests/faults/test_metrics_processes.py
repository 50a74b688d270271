"""Metrics across processes: a real ``run.py api`` and ``run.py worker`` on one host (one data
dir, so one metrics directory) sharing the session's Valkey and the test's Postgres. The jobs
run in the worker process; the api's ``/metrics`` shows the worker's counts (prometheus-client's
multi-process mode), and its JSON log lines (``CHORUS_LOG_FORMAT=json``) parse, carrying the
request id that the worker's lines for the same job carry too."""

from __future__ import annotations

import json
import signal

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import (
    ChorusProcess,
    chorus_process,
    client,
    eventually,
    submit_all,
    unique_prefix,
    wait_all_terminal,
)

JOBS = 4


async def scrape(api: ChorusProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as anonymous:
        r = await anonymous.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def json_lines(proc: ChorusProcess) -> list[dict]:
    return [json.loads(line) for line in proc.lines if line.startswith("{")]


@pytest.mark.slow
async def test_the_api_shows_the_workers_counts_and_json_logs_carry_request_ids(
    redis_url, database_url, store, tmp_path
) -> None:
    _, key = await store.create_user("metrics-processes")
    common = dict(
        data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
        prefix=unique_prefix(), ready_timeout=60.0,
        env={"CHORUS_LOG_FORMAT": "json", "CHORUS_FAKE_LATENCY_S": "0.05"},
    )
    with trio.fail_after(120):
        async with (
            chorus_process(consumer="api", role="api", **common) as api,  # type: ignore[arg-type]
            chorus_process(consumer="worker-m", role="worker", ready="started",
                           **common) as worker,  # type: ignore[arg-type]
            client(api.base_url, key, timeout=30) as http,
        ):
            r = await http.post("/v1/jobs", json={"text": "Traced across processes."},
                                headers={"X-Request-ID": "cross-process-1"})
            assert r.status_code == 202, r.text
            traced = r.json()["id"]
            ids = await submit_all(http, [f"Counted in the worker {i}." for i in range(JOBS)])
            await wait_all_terminal(database_url, JOBS + 1, timeout=60)

            async def worker_counts_seen() -> bool:
                samples = await scrape(api)
                calls = samples.get(
                    ("chorus_provider_calls_total", (("outcome", "ok"), ("provider", "fake"))), 0
                )
                done = samples.get(
                    ("chorus_job_duration_seconds_count", (("status", "succeeded"),)), 0
                )
                return calls == JOBS + 1 and done == JOBS + 1

            await eventually(worker_counts_seen, 10, "the worker's counts at the api")
            samples = await scrape(api)
            # counted in the api process itself: the submits, the HTTP requests
            assert samples[("chorus_job_transitions_total", (("status", "queued"),))] == JOBS + 1
            assert samples[("chorus_http_requests_total", (
                ("method", "POST"), ("route", "/v1/jobs"), ("status", "202")))] == JOBS + 1
            assert samples[("chorus_redis_up", ())] == 1

            # the worker's job lines (JSON too) carry the request id of the submit
            async def worker_logged() -> list[dict]:
                return [line for line in json_lines(worker) if line.get("job_id") == traced]

            lines = await eventually(worker_logged, 10, "the worker's job lines")
            assert {line["request_id"] for line in lines} == {"cross-process-1"}  # type: ignore[union-attr]
            access = [line for line in json_lines(api) if line["logger"] == "chorus.access"]
            mine = [line for line in access if line.get("request_id") == "cross-process-1"]
            assert [(m["method"], m["path"], m["status"]) for m in mine] == [
                ("POST", "/v1/jobs", 202)]
            assert all(key not in line for line in api.lines + worker.lines)
            assert len(ids) == JOBS
            for proc in (worker, api):
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait_exit(20) == 0, proc.output
    # each process wrote its own files into the one directory
    files = sorted(p.name for p in (tmp_path / "metrics").glob("*.db"))
    assert len({name.rpartition("_")[2] for name in files}) == 2, files

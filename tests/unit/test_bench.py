"""The pure helpers of ``run.py bench`` (the workloads themselves are a command, not a test)."""

from __future__ import annotations

import math

import pytest
import trio

from actors import bench_http, bench_load
from actors.bench import _partial, _piper_figures, percentile, refill_gaps


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_refill_gaps_match_each_freed_slot_with_the_start_it_allowed() -> None:
    # two slots; jobs of 1 s; each new job starts 0.1 s after a slot frees
    starts = [0.0, 0.0, 1.1, 1.1, 2.2]
    finishes = [1.0, 1.0, 2.1, 2.1, 3.2]
    assert refill_gaps(starts, finishes, 2) == pytest.approx([0.1, 0.1, 0.1])


def test_refill_gaps_need_more_jobs_than_slots() -> None:
    assert refill_gaps([0.0, 0.0], [1.0, 1.0], 3) == []


def test_piper_speed_is_information_and_says_when_piper_is_missing() -> None:
    (missing,) = _piper_figures({"installed": False})
    assert "not installed" in missing[0] and missing[4] is None  # info, not a failure
    figures = _piper_figures({"installed": True, "x_realtime_1": 9.5, "x_realtime_2": 17.0})
    assert [(f[1], f[2], f[4]) for f in figures] == [(9.5, "x real", None), (17.0, "x real", None)]
    assert "2 onnxruntime threads" in figures[1][0]
    assert _partial({"piper": {"installed": False}}) == [missing]  # ``--only piper``


async def test_the_load_client_measures_a_real_server_over_kept_alive_connections() -> None:
    """``actors/bench_load.py`` against the bench's bare quart-trio app on 127.0.0.1: every
    request answered (bodies numbered), per-connection keep-alive, the figures filled in."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            port = await bench_http._start_bare(nursery, stop)
            spec = {"host": "127.0.0.1", "port": port, "connections": 3, "requests": 30,
                    "method": "POST", "path": "/bare", "body": '{"n": {n}}', "warmup": 2}
            out = await bench_load.run(spec)
            missing = await bench_load.run({**spec, "path": "/nope", "requests": 5})
            stop.set()
    assert out["requests"] == 30 and out["statuses"] == {"200": 30} and out["connections"] == 3
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"] and out["requests_per_s"] > 0
    assert missing["statuses"] == {"404": 5}


def test_http_front_rows_carry_the_issue_targets() -> None:
    def m(rate: float, p50: float) -> dict[str, float]:
        return {"requests_per_s": rate, "p50_ms": p50, "p95_ms": 2 * p50, "cpu_ms_per_req": 1.0,
                "of_bare": rate / 2000}

    r = {f"{kind}_{c}": m(rate, p50) for c in (32, 1) for kind, rate, p50 in (
        ("bare", 2000, 0.6), ("hit", 1100, 1.4), ("new", 700, 2.0), ("quota", 500, 3.0),
        ("get", 1600, 1.0))}
    verdicts = {name: ok for name, _, _, _, ok in bench_http.figures(r) if ok is not None}
    assert verdicts == {"POST /v1/jobs cache hit, 32 conn req": True,
                        "POST /v1/jobs new job, 32 conn req": False,
                        "GET /v1/jobs/{id}, 32 conn req": True,
                        "POST /v1/jobs cache hit, 1 conn p50": True}

"""The instruments, and the named functions the code calls to count (no prometheus calls
elsewhere). Each call is a dictionary look-up and one or three in-memory (or memory-mapped, in
multi-process mode) additions: cheap enough for the hot path, no await, no lock held across one.

Names and labels are listed in the README ("Observability").
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

JOB_TRANSITIONS = Counter(
    "chorus_job_transitions", "Jobs entering a status (queued, running, succeeded, failed, dead,"
    " cancelled)", ["status"],
)
JOB_DURATION = Histogram(
    "chorus_job_duration_seconds", "From a job's start to its end (generated and stored, or"
    " failed), by how it ended", ["status"], buckets=JOB_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "chorus_job_queue_wait_seconds", "From a job's submit to its start by a worker, by lane",
    ["lane"], buckets=WAIT_BUCKETS,
)
PROVIDER_CALLS = Counter(
    "chorus_provider_calls", "Synthesis calls to the provider, by outcome (ok, error)",
    ["provider", "outcome"],
)
ABSORBED_429 = Counter(
    "chorus_provider_429_absorbed", "429 answers from the provider waited out and retried"
    " (never seen by a client)", ["provider"],
)
ERRORS = Counter(
    "chorus_errors", "Typed errors by code: answered over HTTP (where=http) or ending or"
    " retrying a job (where=job)", ["where", "code"],
)
CACHE = Counter(
    "chorus_cache_lookups", "Audio cache look-ups: at submit (where=submit) and by a worker"
    " before generating (where=worker)", ["where", "result"],
)
RESTARTS = Counter(
    "chorus_supervisor_restarts", "Children restarted by a supervisor", ["child"],
)
HTTP_REQUESTS = Counter(
    "chorus_http_requests", "HTTP requests by route (the URL rule, not the path), method and"
    " status", ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "chorus_http_request_duration_seconds", "HTTP request durations by route",
    ["route"], buckets=HTTP_BUCKETS,
)

#: (metric, label values) -> child: skips prometheus-client's lock in ``labels`` once known
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def job_transition(status: str) -> None:
    _child(JOB_TRANSITIONS, status).inc()


def job_started(queue_wait_s: float, lane: str) -> None:
    _child(JOB_TRANSITIONS, "running").inc()
    _child(QUEUE_WAIT, lane).observe(max(0.0, queue_wait_s))


def job_finished(status: str, duration_s: float | None) -> None:
    _child(JOB_TRANSITIONS, status).inc()
    if duration_s is not None:
        _child(JOB_DURATION, status).observe(max(0.0, duration_s))


def provider_call(provider: str, ok: bool) -> None:
    _child(PROVIDER_CALLS, provider, "ok" if ok else "error").inc()


def provider_429_absorbed(provider: str) -> None:
    _child(ABSORBED_429, provider).inc()


def error(where: str, code: str) -> None:
    _child(ERRORS, where, code).inc()


def cache_lookup(where: str, hit: bool) -> None:
    _child(CACHE, where, "hit" if hit else "miss").inc()


def supervisor_restart(child: str) -> None:
    _child(RESTARTS, child).inc()


def http_request(route: str, method: str, status: int, duration_s: float) -> None:
    _child(HTTP_REQUESTS, route, method, str(status)).inc()
    _child(HTTP_DURATION, route).observe(duration_s)

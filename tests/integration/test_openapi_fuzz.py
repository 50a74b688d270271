"""Schemathesis against a live Chorus (real Valkey and Postgres, HTTP on 127.0.0.1:0): every
operation of ``/openapi.json`` gets generated requests, valid and invalid, authenticated as a
real user, some of them about real records of that user (a finished job and its audio, a
finished storybook, a dictionary). Every answer must be documented (status code, content type,
body schema, the problem's ``code``) and never a server error (5xx), except a 503 the operation
documents.

Bounded: ``EXAMPLES`` per operation, derandomized (the same cases every run), and a total
deadline. The run is synchronous (requests), so it runs in a worker thread while the service
keeps serving on this trio loop.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import trio
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocols.postgres.store import PgStore
from tests.support.harness import Running, make_settings, running_service

#: per operation; ``FUZZ_EXAMPLES=50 FUZZ_DEADLINE_S=400 FUZZ_RANDOM=1`` explores further
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 12))
#: how long an event stream is read before it counts as answered (schemathesis cuts it there)
STREAM_READ_S = 0.3
DEADLINE_S = float(os.environ.get("FUZZ_DEADLINE_S", 60))
#: new cases each run instead of the same ones
RANDOM = bool(os.environ.get("FUZZ_RANDOM"))
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@schemathesis.check
def no_undocumented_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except a 503 (a dependency or a limit: retry later) the operation documents."""
    status = response.status_code
    documented = case.operation.definition.raw.get("responses", {})
    if status >= 500 and not (status == 503 and "503" in documented):
        raise AssertionError(
            f"{case.operation.label} answered {status}: {response.text[:500]}"
        )
    return None


def fuzz(
    base: str, key: str, known: dict[str, Any]
) -> tuple[dict[str, set[int]], dict[str, str]]:
    """Run every operation's examples: the statuses each answered, and each failing
    operation's first failure (shrunk by hypothesis to a small case). ``known``: ids of real
    records of the user, used in the paths of some cases so that answers about real records
    (not only 404s) are checked too."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    started = time.monotonic()
    counts: dict[str, set[int]] = {}
    failures: dict[str, str] = {}
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {key}"
        for result in schema.get_all_operations():
            operation = result.ok()
            counts[operation.label] = set()
            try:
                examples(operation, base, session, counts, started, known)()
            except (Exception, FailureGroup) as exc:  # every operation's, not only the first
                failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
        for (path, method), body in well_formed(known).items():
            operation = schema[path][method]
            case = operation.Case(path_parameters={"voice_id": known["voice_id"]}
                                  if "{voice_id}" in path else None,
                                  body=body, media_type="application/json")
            try:
                response = case.call_and_validate(
                    base_url=base, session=session, timeout=10.0,
                    checks=[*CHECKS, no_undocumented_server_error],
                )
                counts[operation.label].add(response.status_code)
                if response.status_code >= 300:  # a well-formed request makes audio
                    failures[f"{operation.label} (well formed)"] = (
                        f"{response.status_code}: {response.text[:500]}")
            except (Exception, FailureGroup) as exc:
                failures[f"{operation.label} (well formed)"] = f"{type(exc).__name__}: {exc}"[:2000]
    return counts, failures


def well_formed(known: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Requests that make audio (generated bodies rarely do), so that the compatible speech
    routes' successful answers are checked against the document too."""
    el = {"text": "Hello from the fuzz run.", "model_id": "eleven_multilingual_v2"}
    tts = "/v1/text-to-speech/{voice_id}"
    openai = {"model": "tts-1", "input": "Hello from the fuzz run.", "voice": known["voice_id"]}
    return {
        (tts, "POST"): el, (f"{tts}/stream", "POST"): el,
        (f"{tts}/with-timestamps", "POST"): el, (f"{tts}/stream/with-timestamps", "POST"): el,
        ("/v1/audio/speech", "POST"): openai,
        ("/openai/v1/audio/speech", "POST"): {**openai, "response_format": "wav",
                                               "stream_format": "sse"},
    }


def examples(operation: Any, base: str, session: requests.Session, counts: dict[str, set[int]],
             started: float, known: dict[str, Any]) -> Any:
    label = operation.label
    strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                  operation.as_strategy(GenerationMode.NEGATIVE)]
    names = {p.name for p in operation.path_parameters}
    if names and names <= set(known) and operation.method.upper() != "DELETE":
        ids = {name: known[name] for name in names}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids))
    answers = operation.definition.raw.get("responses", {}).values()
    streams = any("text/event-stream" in a.get("content", {}) for a in answers)
    timeout = STREAM_READ_S if streams else 10.0

    @hypothesis.settings(
        max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    @hypothesis.given(case=hypothesis.strategies.one_of(*strategies))
    def run(case: Any) -> None:
        assert time.monotonic() - started < DEADLINE_S, "fuzz run over its deadline"
        response = case.call_and_validate(
            base_url=base, session=session, timeout=timeout,
            checks=[*CHECKS, no_undocumented_server_error],
        )
        counts.setdefault(label, set()).add(response.status_code)

    return run


async def records(chorus: Running) -> dict[str, Any]:
    """A finished job with its audio, a finished storybook and a dictionary of the user."""
    r = await chorus.submit("Hello from the fuzz run.")
    assert r.status_code in (200, 202), r.text
    job = (await chorus.wait_done([r.json()["id"]]))[r.json()["id"]]
    assert job["status"] == "succeeded", job
    r = await chorus.client.post("/v1/storybooks", json={
        "title": "t", "pages": [{"lines": [{"text": "One line.", "voice_id": job["voice_id"]}]}],
    })
    assert r.status_code == 202, r.text
    book_id = r.json()["id"]
    while True:  # bounded by the caller's deadline
        book = (await chorus.client.get(f"/v1/storybooks/{book_id}")).json()
        if book["status"] not in ("queued", "running"):
            break
        await trio.sleep(0.02)
    assert book["status"] == "succeeded", book
    r = await chorus.client.post("/v1/pronunciation-dictionaries/add-from-rules", json={
        "name": "d", "rules": [{"type": "alias", "string_to_replace": "Chorus", "alias": "k"}],
    })
    assert r.status_code == 201, r.text
    return {
        "job_id": job["id"], "audio_id": job["audio_id"], "voice_id": job["voice_id"],
        "item_id": job["id"], "book_id": book_id, "page": 0, "kind": "vtt", "name": "docs.js",
        "dictionary_id": r.json()["id"], "version_id": r.json()["version_id"],
    }


@pytest.mark.slow
async def test_every_operation_answers_as_documented(
    tmp_path: Path, redis_url: str, store: PgStore
) -> None:
    settings = make_settings(tmp_path)
    async with running_service(redis_url=redis_url, store=store, settings=settings) as chorus:
        with trio.fail_after(DEADLINE_S + 30):
            known = await records(chorus)
            base = str(chorus.client.base_url).rstrip("/")
            counts, failures = await trio.to_thread.run_sync(
                fuzz, base, chorus.api_key, known, abandon_on_cancel=True
            )
    assert not failures, "\n\n".join(f"{op}: {why}" for op, why in failures.items())
    assert len(counts) >= 30, counts
    assert all(counts.values()), counts  # every operation was called
    # answers about real records were checked, not only 404s and 422s
    for label in ("GET /v1/jobs/{job_id}", "GET /v1/audio/{audio_id}",
                  "GET /v1/storybooks/{book_id}", "GET /v1/storybooks/{book_id}/captions.{kind}",
                  "GET /v1/pronunciation-dictionaries/{dictionary_id}", "GET /v1/voices/{voice_id}",
                  "POST /v1/jobs", "GET /v1/voices", "GET /v1/usage", "GET /docs/static/{name}",
                  "GET /v1/jobs", "GET /v1/jobs/{job_id}/alignment", "GET /v1/history",
                  "GET /v1/history/{item_id}", "GET /v1/history/{item_id}/audio", "GET /v1/user",
                  "GET /v2/voices", "GET /v1/models", "POST /v1/text-to-speech/{voice_id}",
                  "POST /v1/text-to-speech/{voice_id}/stream/with-timestamps",
                  "POST /v1/text-to-speech/{voice_id}/with-timestamps",
                  "POST /v1/audio/speech", "POST /openai/v1/audio/speech", "GET /"):
        assert counts[label] & {200, 202, 206}, (label, counts[label])

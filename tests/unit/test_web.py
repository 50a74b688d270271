"""The HTTP front against in-memory fakes (Quart test client), plus one real hypercorn run."""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from actors.pipeline.intake import Intake
from protocols.domain.audio import parse_format
from protocols.domain.voices import VoiceCatalog
from protocols.errors import (
    IdempotencyConflict,
    NotFound,
    QueueFull,
    QueueUnavailable,
    UnknownVoice,
)
from protocols.events import EventKind
from protocols.messages import (
    DEFAULT_FORMAT,
    JobStatus,
    NewAudio,
    NewJob,
    SpeechJob,
    SynthesisRequest,
    User,
)
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore, RecordingEvents
from tests.support.timing import capped_at
from web.app import create_app, serve
from web.context import WebContext

CAP_S = 10.0
PROBLEM = "application/problem+json"


capped = capped_at(CAP_S)


@dataclasses.dataclass
class Env:
    settings: Settings
    store: FakeJobStore
    blobs: FakeBlobStore
    provider: FakeProvider
    ctx: WebContext
    user: User
    key: str
    other: User
    other_key: str
    submitted: list[SpeechJob] = dataclasses.field(default_factory=list)
    submit_errors: list[Exception] = dataclasses.field(default_factory=list)
    submit_hangs: bool = False
    ready: dict[str, bool] = dataclasses.field(default_factory=dict)
    #: what the Intake hands jobs to (records them in ``submitted``)
    enqueue: Callable[[SpeechJob], Awaitable[None]] | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self) -> Any:
        return create_app(self.ctx).test_client()

    async def finish(self, job_id: str, data: bytes = b"ID3-audio") -> str:
        """Run a job to success the way a TTSActor would; returns its audio id."""
        job = await self.store.start_job(job_id)
        assert job is not None
        path = await self.blobs.put("ab" + job_id, "mp3", data)
        audio = NewAudio(
            owner=job.owner,
            cache_key="ab" + job_id,
            format=job.output_format,
            content_type=parse_format(job.output_format).content_type,
            duration_s=1.5,
            size=len(data),
            path=path,
        )
        done = await self.store.finish_job(job_id, audio)
        assert done.status is JobStatus.succeeded and done.audio_id
        return done.audio_id


@pytest.fixture
async def env() -> Env:
    settings = Settings(max_text_chars=100, shutdown_grace_s=1.0, db_timeout_s=1.0)
    store, blobs, provider = FakeJobStore(), FakeBlobStore(), FakeProvider(voices=TEST_VOICES)
    user, key = await store.create_user("alice")
    other, other_key = await store.create_user("bob")
    holder: dict[str, Env] = {}

    async def submit(job: SpeechJob) -> None:
        e = holder["env"]
        await trio.lowlevel.checkpoint()
        if e.submit_hangs:
            await trio.sleep_forever()
        if e.submit_errors:
            raise e.submit_errors.pop(0)
        e.submitted.append(job)

    async def readiness() -> dict[str, bool]:
        await trio.lowlevel.checkpoint()
        return dict(holder["env"].ready)

    ctx = WebContext(
        settings=settings,
        store=store,
        blobs=blobs,
        provider=provider,
        intake=intake_of(settings, store, blobs, provider, submit),
        readiness=readiness,
    )
    holder["env"] = Env(settings, store, blobs, provider, ctx, user, key, other, other_key,
                        enqueue=submit)
    holder["env"].ready.update(redis=True, postgres=True)
    return holder["env"]


def intake_of(
    settings: Settings, store: FakeJobStore, blobs: FakeBlobStore, provider: FakeProvider,
    enqueue: Callable[[SpeechJob], Awaitable[None]], events: Any = None,
) -> Intake:
    voices = VoiceCatalog(store, provider)
    extra = {} if events is None else {"events": events}
    return Intake(settings, store=store, blobs=blobs, provider=provider, voices=voices,
                  enqueue=enqueue, **extra)


async def problem_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = await response.get_json(force=True)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"]
    return body


async def post_job(env: Env, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await env.client().post("/v1/jobs", json=body, headers={**env.auth, **(headers or {})})


# --- health ---------------------------------------------------------------------------------


@capped
async def test_healthz_needs_no_key(env: Env) -> None:
    response = await env.client().get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


@capped
async def test_readyz_ready(env: Env) -> None:
    response = await env.client().get("/readyz")
    assert response.status_code == 200
    assert await response.get_json() == {
        "status": "ready",
        "checks": {"redis": True, "postgres": True},
    }


@capped
async def test_readyz_503_names_the_failing_dependency(env: Env) -> None:
    env.ready["postgres"] = False
    response = await env.client().get("/readyz")
    body = await problem_of(response, 503, "not_ready")
    assert body["checks"] == {"redis": True, "postgres": False}
    assert response.headers["Retry-After"]


@capped
async def test_readyz_503_when_the_check_itself_fails(env: Env) -> None:
    async def broken() -> dict[str, bool]:
        raise RuntimeError("boom")

    env.ctx = dataclasses.replace(env.ctx, readiness=broken)
    await problem_of(await env.client().get("/readyz"), 503, "not_ready")


# --- auth -----------------------------------------------------------------------------------


@capped
async def test_missing_key_is_401_with_www_authenticate(env: Env) -> None:
    response = await env.client().get("/v1/voices")
    await problem_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@capped
async def test_wrong_key_is_401_and_never_echoed(env: Env) -> None:
    wrong = "ck_wrong-key-that-must-not-leak"
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"xi-api-key": wrong}):
        response = await env.client().get("/v1/voices", headers=headers)
        await problem_of(response, 401, "unauthorized")
        assert wrong not in await response.get_data(as_text=True)
        assert wrong not in str(response.headers)


@capped
async def test_both_header_styles_authenticate(env: Env) -> None:
    for headers in (
        {"Authorization": f"Bearer {env.key}"},
        {"Authorization": f"bearer {env.key}"},
        {"xi-api-key": env.key},
    ):
        response = await env.client().get("/v1/voices", headers=headers)
        assert response.status_code == 200, headers


@capped
async def test_other_scheme_or_two_different_keys_is_401(env: Env) -> None:
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    await problem_of(await env.client().get("/v1/voices", headers=basic), 401, "unauthorized")
    two = {"Authorization": f"Bearer {env.key}", "xi-api-key": env.other_key}
    await problem_of(await env.client().get("/v1/voices", headers=two), 401, "unauthorized")


# --- submit ---------------------------------------------------------------------------------


@capped
async def test_submit_accepts_and_enqueues(env: Env) -> None:
    response = await post_job(env, {"text": "  Hello   world.  "})
    assert response.status_code == 202
    body = await response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert body["id"].startswith("job_")
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["characters"] == len("Hello world.")
    assert body["voice_id"] == "en-1"  # the provider default
    assert body["output_format"] == DEFAULT_FORMAT
    assert body["language"] is None
    assert body["created_at"].endswith("Z")
    assert "error" not in body and "audio_url" not in body
    (job,) = env.submitted
    assert job.job_id == body["id"] and job.owner == env.user.id
    assert job.text == "Hello world." and job.submitted_at > 0
    assert env.store.jobs[body["id"]].owner == env.user.id


@capped
async def test_submit_resolves_voice_by_language_and_format(env: Env) -> None:
    response = await post_job(
        env, {"text": "안녕하세요", "language": "ko", "output_format": "pcm_16000"}
    )
    assert response.status_code == 202
    body = await response.get_json()
    assert (body["voice_id"], body["language"], body["output_format"]) == (
        "ko-1",
        "ko",
        "pcm_16000",
    )


@capped
async def test_empty_text_is_422(env: Env) -> None:
    await problem_of(await post_job(env, {"text": " \n\t "}), 422, "text_empty")
    assert not env.store.jobs and not env.submitted


@capped
async def test_too_long_text_is_413_with_the_limit(env: Env) -> None:
    body = await problem_of(await post_job(env, {"text": "a" * 101}), 413, "text_too_long")
    assert body["limit"] == 100 and body["characters"] == 101
    assert (await post_job(env, {"text": "a" * 100})).status_code == 202


@capped
async def test_too_large_body_is_413(env: Env) -> None:
    huge = b'{"text": "' + b"a" * 1_000_000 + b'"}'
    response = await env.client().post(
        "/v1/jobs", data=huge, headers={**env.auth, "Content-Type": "application/json"}
    )
    await problem_of(response, 413, "payload_too_large")


@capped
async def test_unknown_voice_is_404(env: Env) -> None:
    response = await post_job(env, {"text": "hi", "voice_id": "nope"})
    await problem_of(response, 404, "voice_not_found")
    response = await post_job(env, {"text": "hi", "language": "xx"})
    await problem_of(response, 404, "voice_not_found")
    assert not env.store.jobs and not env.submitted


@capped
async def test_unsupported_format_is_422_listing_supported(env: Env) -> None:
    response = await post_job(env, {"text": "hi", "output_format": "mp3_1_1"})
    body = await problem_of(response, 422, "unsupported_output_format")
    assert DEFAULT_FORMAT in body["supported"]


@capped
async def test_malformed_json_is_400(env: Env) -> None:
    for raw in (b"{not json", b"[1, 2]", b'"text"', b""):
        response = await env.client().post(
            "/v1/jobs", data=raw, headers={**env.auth, "Content-Type": "application/json"}
        )
        await problem_of(response, 400, "malformed_json")


@capped
async def test_unknown_field_is_422_naming_it(env: Env) -> None:
    response = await post_job(env, {"text": "hi", "speed": 2})
    body = await problem_of(response, 422, "unknown_field")
    assert body["fields"] == ["speed"]
    assert "speed" in body["detail"]


@capped
async def test_wrong_type_is_422_with_the_path(env: Env) -> None:
    body = await problem_of(await post_job(env, {"text": 5}), 422, "invalid_input")
    assert "$.text" in body["detail"]
    body = await problem_of(await post_job(env, {}), 422, "invalid_input")
    assert "text" in body["detail"]


@capped
async def test_non_json_content_type_is_415(env: Env) -> None:
    response = await env.client().post(
        "/v1/jobs", data=b"text=hi", headers={**env.auth, "Content-Type": "text/plain"}
    )
    await problem_of(response, 415, "unsupported_media_type")


@capped
async def test_queue_full_is_503_and_leaves_no_job(env: Env) -> None:
    for error, code in (
        (QueueFull("channel full"), "queue_full"),
        (QueueUnavailable("redis://:pw@host down"), "queue_unavailable"),
    ):
        env.submit_errors.append(error)
        response = await post_job(env, {"text": "hi", "idempotency_key": code})
        body = await problem_of(response, 503, code)
        assert 1 <= int(response.headers["Retry-After"]) <= 5
        assert "pw@" not in str(body)
        assert env.store.jobs == {} and env.store.by_idempotency_key == {}
        assert env.submitted == []
    # the client's retry with the same key is a fresh, accepted job
    response = await post_job(env, {"text": "hi", "idempotency_key": "queue_full"})
    assert response.status_code == 202
    assert len(env.store.jobs) == 1 and len(env.submitted) == 1


@capped
async def test_enqueue_error_after_a_worker_started_the_job_is_still_accepted(env: Env) -> None:
    """The XADD landed but its reply was lost, and a worker started the job before the front
    could undo it: the job will run, so the client must hear 202, not 503 (a retry without an
    idempotency key would otherwise make a second job)."""
    original = env.enqueue
    assert original is not None

    async def landed_then_lost(job: SpeechJob) -> None:
        await original(job)
        await env.store.start_job(job.job_id)  # a worker picked it up meanwhile
        raise QueueUnavailable("reply lost")

    intake = intake_of(env.settings, env.store, env.blobs, env.provider, landed_then_lost)
    env.ctx = dataclasses.replace(env.ctx, intake=intake)
    response = await post_job(env, {"text": "hi"})
    assert response.status_code == 202
    body = await response.get_json()
    assert body["status"] == "running" and body["id"] in env.store.jobs


@capped
async def test_submit_bug_is_500_and_leaves_no_job(env: Env) -> None:
    env.submit_errors.append(RuntimeError("producer exploded"))
    body = await problem_of(await post_job(env, {"text": "hi"}), 500, "internal_error")
    assert "exploded" not in str(body)
    assert env.store.jobs == {}


async def test_submit_that_never_returns_is_bounded(env: Env, autojump_clock: Any) -> None:
    env.submit_hangs = True
    with trio.fail_after(60):  # virtual time: the bound is 2*db + submit + redis = 6 s
        response = await post_job(env, {"text": "hi"})
    await problem_of(response, 503, "queue_unavailable")
    assert env.store.jobs == {}


@capped
async def test_idempotent_repeat_is_202_then_200_after_success(env: Env) -> None:
    request = {"text": "Once upon a time", "idempotency_key": "story-1"}
    first = await post_job(env, request)
    assert first.status_code == 202
    job_id = (await first.get_json())["id"]

    again = await post_job(env, request)
    assert again.status_code == 202
    assert (await again.get_json())["id"] == job_id
    assert [job.job_id for job in env.submitted] == [job_id, job_id]  # re-submit heals
    assert len(env.store.jobs) == 1

    audio_id = await env.finish(job_id)
    done = await post_job(env, request)
    assert done.status_code == 200
    body = await done.get_json()
    assert body["id"] == job_id and body["status"] == "succeeded"
    assert body["audio_id"] == audio_id and body["audio_url"] == f"/v1/audio/{audio_id}"
    assert len(env.submitted) == 2  # a finished job is not enqueued again


@capped
async def test_idempotency_key_header(env: Env) -> None:
    first = await post_job(env, {"text": "hi"}, {"Idempotency-Key": "k1"})
    again = await post_job(env, {"text": "hi", "idempotency_key": "k1"}, {"Idempotency-Key": "k1"})
    assert (await first.get_json())["id"] == (await again.get_json())["id"]
    mismatch = await post_job(
        env, {"text": "hi", "idempotency_key": "k2"}, {"Idempotency-Key": "k1"}
    )
    await problem_of(mismatch, 400, "idempotency_key_mismatch")


@capped
async def test_idempotency_key_scoped_per_user(env: Env) -> None:
    mine = await post_job(env, {"text": "hi", "idempotency_key": "same"})
    theirs = await env.client().post(
        "/v1/jobs",
        json={"text": "other text", "idempotency_key": "same"},
        headers={"xi-api-key": env.other_key},
    )
    assert mine.status_code == theirs.status_code == 202
    assert (await mine.get_json())["id"] != (await theirs.get_json())["id"]


@capped
async def test_idempotency_conflict_is_409(env: Env) -> None:
    assert (await post_job(env, {"text": "one", "idempotency_key": "k"})).status_code == 202
    response = await post_job(env, {"text": "two", "idempotency_key": "k"})
    await problem_of(response, 409, "idempotency_key_reused")
    assert len(env.store.jobs) == 1


@capped
async def test_repeat_of_failed_job_is_200_as_is(env: Env) -> None:
    request = {"text": "hi", "idempotency_key": "k"}
    job_id = (await (await post_job(env, request)).get_json())["id"]
    await env.store.start_job(job_id)
    await env.store.fail_job(job_id, "synthesis_failed", "engine said no")
    response = await post_job(env, request)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "synthesis_failed", "message": "engine said no"}
    assert body["finished_at"].endswith("Z") and body["started_at"].endswith("Z")
    assert len(env.submitted) == 1


@capped
async def test_repeat_with_queue_full_keeps_the_accepted_job(env: Env) -> None:
    request = {"text": "hi", "idempotency_key": "k"}
    job_id = (await (await post_job(env, request)).get_json())["id"]
    env.submit_errors.append(QueueFull())
    await problem_of(await post_job(env, request), 503, "queue_full")
    assert job_id in env.store.jobs  # accepted before: never discarded


@capped
async def test_store_unavailable_is_503_without_internals(env: Env) -> None:
    env.store.down = True
    response = await post_job(env, {"text": "hi"})
    body = await problem_of(response, 503, "store_unavailable")
    assert response.headers["Retry-After"]
    assert "fake store" not in str(body) and body["incident"]


# --- read jobs ------------------------------------------------------------------------------


@capped
async def test_get_job_and_other_users_job_is_404(env: Env) -> None:
    job_id = (await (await post_job(env, {"text": "hi", "language": "en"})).get_json())["id"]
    response = await env.client().get(f"/v1/jobs/{job_id}", headers=env.auth)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["id"] == job_id and body["status"] == "queued" and body["language"] == "en"
    assert set(body) >= {
        "id",
        "status",
        "attempts",
        "created_at",
        "characters",
        "voice_id",
        "output_format",
        "language",
    }
    assert "owner" not in body and "text" not in body

    theirs = await env.client().get(f"/v1/jobs/{job_id}", headers={"xi-api-key": env.other_key})
    await problem_of(theirs, 404, "not_found")
    missing = await env.client().get("/v1/jobs/job_nope", headers=env.auth)
    await problem_of(missing, 404, "not_found")


# --- audio ----------------------------------------------------------------------------------


@capped
async def test_get_and_head_audio(env: Env) -> None:
    job_id = (await (await post_job(env, {"text": "hi"})).get_json())["id"]
    audio_id = await env.finish(job_id, b"0123456789")
    client = env.client()

    response = await client.get(f"/v1/audio/{audio_id}", headers=env.auth)
    assert response.status_code == 200
    assert await response.get_data() == b"0123456789"
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Content-Length"] == "10"
    assert response.headers["ETag"] == f'"ab{job_id}"'
    assert response.headers["Cache-Control"].startswith("private")

    head = await client.head(f"/v1/audio/{audio_id}", headers=env.auth)
    assert head.status_code == 200
    assert head.headers["Content-Type"] == "audio/mpeg"
    assert await head.get_data() == b""
    # (the test client recomputes Content-Length from the empty body; the real-server test
    # checks that HEAD reports the audio's size)

    cached = await client.get(
        f"/v1/audio/{audio_id}", headers={**env.auth, "If-None-Match": f'"ab{job_id}"'}
    )
    assert cached.status_code == 304

    ranged = await client.get(f"/v1/audio/{audio_id}", headers={**env.auth, "Range": "bytes=2-4"})
    assert ranged.status_code == 206 and await ranged.get_data() == b"234"
    assert ranged.headers["Content-Range"] == "bytes 2-4/10"
    beyond = await client.get(f"/v1/audio/{audio_id}", headers={**env.auth, "Range": "bytes=50-"})
    await problem_of(beyond, 416, "range_not_satisfiable")


@capped
async def test_other_users_audio_is_404(env: Env) -> None:
    job_id = (await (await post_job(env, {"text": "hi"})).get_json())["id"]
    audio_id = await env.finish(job_id)
    theirs = {"xi-api-key": env.other_key}
    await problem_of(
        await env.client().get(f"/v1/audio/{audio_id}", headers=theirs), 404, "not_found"
    )
    head = await env.client().head(f"/v1/audio/{audio_id}", headers=theirs)
    assert head.status_code == 404
    await problem_of(
        await env.client().get("/v1/audio/aud_nope", headers=env.auth), 404, "not_found"
    )


@capped
async def test_audio_row_without_file_is_500(env: Env) -> None:
    job_id = (await (await post_job(env, {"text": "hi"})).get_json())["id"]
    audio_id = await env.finish(job_id)
    env.blobs.files.clear()
    response = await env.client().get(f"/v1/audio/{audio_id}", headers=env.auth)
    body = await problem_of(response, 500, "audio_missing")
    assert "ab" + job_id not in str(body)  # no paths in a 5xx


# --- voices ---------------------------------------------------------------------------------


@capped
async def test_voices_list_filter_and_get(env: Env) -> None:
    client = env.client()
    body = await (await client.get("/v1/voices", headers=env.auth)).get_json()
    assert [voice["voice_id"] for voice in body["voices"]] == ["en-1", "en-2", "ko-1"]
    assert set(body["voices"][0]) >= {"voice_id", "name", "language", "languages", "provider"}

    korean = await (await client.get("/v1/voices?language=ko-KR", headers=env.auth)).get_json()
    assert [voice["voice_id"] for voice in korean["voices"]] == ["ko-1"]

    one = await client.get("/v1/voices/en-2", headers=env.auth)
    assert one.status_code == 200 and (await one.get_json())["name"] == "Ben"
    await problem_of(await client.get("/v1/voices/zz", headers=env.auth), 404, "voice_not_found")


# --- generic errors -------------------------------------------------------------------------


@capped
async def test_unknown_route_and_wrong_method_are_problems(env: Env) -> None:
    await problem_of(await env.client().get("/nope"), 404, "not_found")
    response = await env.client().delete("/v1/jobs", headers=env.auth)
    await problem_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@capped
async def test_unexpected_error_is_a_bare_500(env: Env, caplog: Any) -> None:
    async def broken() -> list[Any]:
        raise RuntimeError("password=hunter2 at /srv/secret")

    env.provider.voices = broken  # type: ignore[method-assign]
    response = await env.client().get("/v1/voices", headers=env.auth)
    body = await problem_of(response, 500, "internal_error")
    text = await response.get_data(as_text=True)
    assert "hunter2" not in text and "RuntimeError" not in text and "Traceback" not in text
    assert body["incident"] in caplog.text  # logged, with the id the client saw
    assert "hunter2" in caplog.text


# --- the real server ------------------------------------------------------------------------


@capped
async def test_create_app_gives_independent_apps(env: Env) -> None:
    first, second = create_app(env.ctx), create_app(env.ctx)
    assert first is not second
    assert (await first.test_client().get("/healthz")).status_code == 200
    assert (await second.test_client().get("/healthz")).status_code == 200


async def serve_once(env: Env) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(serve, env.ctx, host="127.0.0.1", port=0, shutdown_trigger=stop.wait)
        )
        assert binds and binds[0].startswith("http://127.0.0.1:")
        assert not binds[0].endswith(":0")
        async with httpx.AsyncClient(base_url=binds[0], headers=env.auth) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            created = await http.post("/v1/jobs", json={"text": "over the wire"})
            assert created.status_code == 202
            job_id = created.json()["id"]
            audio_id = await env.finish(job_id, b"wire-bytes")
            head = await http.head(f"/v1/audio/{audio_id}")
            assert head.status_code == 200 and head.headers["content-length"] == "10"
            missing = await http.head("/v1/audio/aud_nope")
            assert missing.status_code == 404 and missing.content == b""
            assert (await http.get("/healthz")).status_code == 200  # connection still fine
            got = await http.get(f"/v1/audio/{audio_id}")
            assert got.content == b"wire-bytes"
            bad = await http.post(
                "/v1/jobs", content=b"{", headers={"content-type": "application/json"}
            )
            assert bad.status_code == 400
            assert bad.headers["content-type"] == PROBLEM
        stop.set()
    # leaving the nursery means serve returned after the shutdown trigger


@capped
async def test_serve_for_real_stop_and_serve_again(env: Env) -> None:
    await serve_once(env)
    await serve_once(env)  # a new incarnation builds a new app and serves again


# --- the fakes keep the documented semantics (other suites rely on them) ---------------------


def new_job(owner: str, key: str | None = "k", text: str = "hi") -> NewJob:
    return NewJob(
        id=f"job_{secrets.token_hex(4)}",
        owner=owner,
        text=text,
        voice_id="en-1",
        language=None,
        output_format=DEFAULT_FORMAT,
        idempotency_key=key,
        request_hash=text,
    )


@capped
async def test_fake_store_idempotency_and_owner_isolation() -> None:
    store = FakeJobStore()
    job, created = await store.create_job(new_job("u1"))
    again, created_again = await store.create_job(new_job("u1"))
    assert created and not created_again and again.id == job.id
    with pytest.raises(IdempotencyConflict):
        await store.create_job(new_job("u1", text="different"))
    theirs, created = await store.create_job(new_job("u2"))
    assert created and theirs.id != job.id
    assert await store.get_job(job.id, owner="u2") is None
    assert await store.get_job(job.id, owner="u1") == job
    await store.discard_job(job.id)
    assert await store.get_job(job.id) is None
    assert (await store.create_job(new_job("u1")))[1]  # the key is free again


@capped
async def test_fake_store_compare_and_set() -> None:
    store = FakeJobStore()
    job, _ = await store.create_job(new_job("u1"))
    audio = NewAudio(
        owner="u1",
        cache_key="c1",
        format=DEFAULT_FORMAT,
        content_type="audio/mpeg",
        duration_s=1.0,
        size=3,
        path="c1/c1.mp3",
    )
    assert (await store.finish_job(job.id, audio)).status is JobStatus.queued  # not running
    first = await store.start_job(job.id)
    second = await store.start_job(job.id)  # a redelivery
    assert first and second and (first.attempts, second.attempts) == (1, 2)
    assert second.started_at == first.started_at
    done = await store.finish_job(job.id, audio)
    assert done.status is JobStatus.succeeded
    assert await store.finish_job(job.id, audio) == done  # idempotent
    assert await store.fail_job(job.id, "x", "y") == done  # terminal: unchanged
    assert await store.start_job(job.id) == done
    await store.discard_job(job.id)  # only never-started jobs are discarded
    assert await store.get_job(job.id) == done
    assert await store.get_audio(done.audio_id or "", owner="u2") is None
    assert await store.find_audio("u1", "c1") == await store.get_audio(done.audio_id or "")
    with pytest.raises(NotFound):
        await store.finish_job("job_unknown", audio)
    assert await store.start_job("job_unknown") is None


@capped
async def test_fake_provider_and_blobs() -> None:
    provider, blobs = FakeProvider(voices=TEST_VOICES), FakeBlobStore()
    assert (await provider.resolve_voice(None, "ko")).voice_id == "ko-1"
    with pytest.raises(UnknownVoice):
        await provider.resolve_voice("nope", None)
    request = SynthesisRequest(text="hi", voice_id="en-1")
    one, two = await provider.synthesize(request), await provider.synthesize(request)
    assert one == two and one.content_type == "audio/mpeg" and one.characters == 2
    path = await blobs.put("abcdef", "mp3", one.audio)
    assert await blobs.put("abcdef", "mp3", b"other") == path  # first write wins
    assert await blobs.get(path) == one.audio and await blobs.exists(path)
    with pytest.raises(FileNotFoundError):
        await blobs.get("zz/none.mp3")


# --- events ---------------------------------------------------------------------------------


@capped
async def test_submit_publishes_job_queued_once(env: Env) -> None:
    recorded = RecordingEvents()
    intake = intake_of(env.settings, env.store, env.blobs, env.provider,
                       env.enqueue, recorded)
    env.ctx = dataclasses.replace(env.ctx, events=recorded, intake=intake)
    r = await post_job(env, {"text": "hello", "idempotency_key": "k1"})
    assert r.status_code == 202
    job_id = (await r.get_json())["id"]
    r = await post_job(env, {"text": "hello", "idempotency_key": "k1"})  # a repeat: no event
    assert r.status_code == 202
    env.submit_errors.append(QueueFull("full"))  # not accepted: no event
    r = await post_job(env, {"text": "other"})
    assert r.status_code == 503
    assert [(e.kind, e.subject, e.owner) for e in recorded.events] == [
        (EventKind.tts_creation, job_id, env.user.id),
        (EventKind.job_queued, job_id, env.user.id),
    ]


@capped
async def test_sse_routes_without_an_event_log_are_503(env: Env) -> None:
    r = await env.client().get("/v1/events", headers=env.auth)
    await problem_of(r, 503, "queue_unavailable")


@capped
async def test_a_known_key_skips_the_database_for_a_few_seconds_an_unknown_one_never(
    env: Env, autojump_clock: Any
) -> None:
    client = env.client()
    for _ in range(3):
        r = await client.get("/v1/usage", headers=env.auth)
        assert r.status_code == 200
    assert env.store.calls["authenticate"] == 1
    await trio.sleep(6)  # past AUTH_TTL_S on the virtual clock: asked again
    assert (await client.get("/v1/usage", headers=env.auth)).status_code == 200
    assert env.store.calls["authenticate"] == 2
    for _ in range(2):
        r = await client.get("/v1/usage", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
    assert env.store.calls["authenticate"] == 4

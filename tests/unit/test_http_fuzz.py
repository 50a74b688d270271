"""Property-based fuzz over the raw HTTP layer (issue 13): whatever a client sends to
``POST /v1/jobs`` or ``PATCH /v1/voices/{id}`` — random bytes, JSON nested thousands deep,
bodies that are not UTF-8, escapes of lone surrogates and U+0000, random content types — the
answer is a 2xx or an ``application/problem+json`` with a code the README documents; never 500.

In process (Quart's test client) on the in-memory fakes, which refuse U+0000 like Postgres.
Deterministic (``derandomize``, no example database) and bounded (about 200 examples per
route, a deadline per example, a ``fail_after`` per request).
"""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actors.pipeline.intake import Intake
from protocols.domain.voices import VoiceCatalog
from protocols.messages import NewVoice, SpeechJob, VoiceStatus
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore
from web.app import create_app
from web.context import WebContext

#: per kind of body: six kinds, about 200 examples per route
FUZZ = settings(
    max_examples=34,
    deadline=dt.timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REQUEST_CAP_S = 10.0
PROBLEM = "application/problem+json"
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"

#: what each route may answer besides 2xx (every one is in the README)
JOB_CODES = frozenset({
    "malformed_json", "json_too_deep", "invalid_character", "unsupported_media_type",
    "unknown_field", "invalid_input", "text_empty", "text_too_long", "payload_too_large",
    "unsupported_output_format", "voice_not_found", "unsupported_language",
    "idempotency_key_mismatch",
})
VOICE_CODES = frozenset({
    "malformed_json", "json_too_deep", "invalid_character", "unknown_field", "invalid_input",
    "invalid_name", "invalid_labels", "payload_too_large",
})

# --- what a client might send ---------------------------------------------------------------

BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xc0\xaf", b"\x80", b"\xef\xbb\xbf"]
ESCAPES = [r"\u0000", r"\ud800", r"\udfff", r"\ud83d\ude00", r"\ud83d", r"\ude00x", r"\x",
           r"\u12", r"\\", r"\"", r"\n", r"\u200b", r"\ufeff", r"\u2060"]
CONTENT_TYPES = [
    None, "application/json", "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/problem+json", "application/vnd.api+json", "text/plain", "text/json",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "",
]

texts = st.text(max_size=40)  # any code point but lone surrogates, U+0000 included
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | texts | st.floats(
    allow_nan=False, allow_infinity=False
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
escaped = st.lists(
    st.sampled_from(ESCAPES) | st.integers(0, 0xFFFF).map(lambda n: f"\\u{n:04x}")
    | texts.map(lambda t: msgspec.json.encode(t)[1:-1].decode()),
    max_size=8,
).map("".join)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """Arrays or objects nested up to 12,000 deep, closed or not, maybe inside a field."""
    depth = draw(st.sampled_from([33, 999, 1000, 1001, 5000, 10_000]) | st.integers(1, 12_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")]))
    inner = opener * depth + b"1" + closer * draw(st.sampled_from([depth, depth // 2, 0]))
    return draw(st.sampled_from([inner, b'{"text": "hi", "voice_settings": ' + inner + b"}",
                                 b'{"labels": ' + inner + b"}"]))


@st.composite
def not_utf8(draw: st.DrawFn) -> bytes:
    """A JSON object whose string holds bytes that are not UTF-8 (or a bare invalid byte)."""
    before, after = draw(texts), draw(texts)
    bad = draw(st.sampled_from(BAD_UTF8))
    field = draw(st.sampled_from([b"text", b"name", b"description", b"x"]))
    inside = b'{"' + field + b'": "' + before.encode() + bad + after.encode() + b'"}'
    return draw(st.sampled_from([inside, bad + inside, inside[: len(inside) // 2] + bad]))


def job_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Plausible jobs (most are accepted) and jobs with any value in any field."""
    unit = st.floats(0, 1)
    plausible = st.fixed_dictionaries({"text": texts}, optional={
        "voice_id": st.sampled_from(["en-1", "en-2", "ko-1", "nope"]),
        "language": st.sampled_from(["en", "ko-KR", "xx"]),
        "output_format": st.sampled_from(["mp3_44100_128", "pcm_16000", "opus_48000_64"]),
        "idempotency_key": texts, "seed": st.integers(0, 2**32 - 1),
        "preference": st.sampled_from(["balanced", "latency", "quality", "expressive"]),
        "voice_settings": st.fixed_dictionaries({}, optional={
            "stability": unit, "similarity_boost": unit, "style": unit,
            "use_speaker_boost": st.booleans(), "speed": st.floats(0.7, 1.2)}),
    })
    some = texts | json_values
    wild = st.fixed_dictionaries(
        {"text": texts | escaped | json_values},
        optional={
            "voice_id": some, "language": some, "output_format": some,
            "idempotency_key": some, "model_id": some, "preference": some,
            "voice_settings": st.dictionaries(
                st.sampled_from(["stability", "speed", "style", "use_speaker_boost", "x"]),
                scalars, max_size=3) | some,
            "seed": st.integers(-(2**63), 2**64 - 1) | some,
            "pronunciation_dictionary_locators": json_values,
            "speed": some,
        },
    )
    return plausible | wild


def voice_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Plausible edits (most are accepted) and edits with any value in any field."""
    plausible = st.fixed_dictionaries({}, optional={
        "name": st.text(min_size=1, max_size=100), "description": texts,
        "visibility": st.sampled_from(["private", "public"]),
        "labels": st.dictionaries(st.text(min_size=1, max_size=10), texts, max_size=5),
    })
    some = texts | json_values
    wild = st.fixed_dictionaries({}, optional={
        "name": some, "description": some, "visibility": st.sampled_from(
            ["private", "public", "default"]) | some,
        "labels": st.dictionaries(texts, texts, max_size=12) | escaped.map(
            lambda e: '{"a": "' + e + '"}') | some,
        "voice_id": some,
    })
    return plausible | wild


def bodies(fields: st.SearchStrategy[dict[str, Any]]) -> dict[str, st.SearchStrategy[bytes]]:
    """Each kind of body gets its own share of the examples (a test runs once per kind)."""
    plain = fields.map(msgspec.json.encode)
    return {
        "bytes": st.binary(max_size=300),
        "nested": nested(),
        "not-utf8": not_utf8(),
        "json": plain,
        "escapes": st.tuples(plain, escaped).map(  # NUL, lone surrogates, ... in a string
            lambda pair: pair[0].replace(b'":"', b'":"' + pair[1].encode(), 1)
        ),
        "cut": plain.map(lambda b: b[: len(b) // 2]),
    }


JOB_BODIES, VOICE_BODIES = bodies(job_fields()), bodies(voice_fields())
KINDS = sorted(JOB_BODIES)
JSON_TYPE = st.just("application/json")
content_types = st.one_of(JSON_TYPE, JSON_TYPE, JSON_TYPE, st.sampled_from(CONTENT_TYPES), st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
))

# --- one request on fresh fakes -------------------------------------------------------------


async def answer(method: str, body: bytes, content_type: str | None) -> tuple[int, str, bytes]:
    settings = Settings()  # the default text limit: bodies up to ~30 KB reach the decoder
    store, blobs, provider = FakeJobStore(), FakeBlobStore(), FakeProvider(voices=TEST_VOICES)
    user, key = await store.create_user("fuzz")
    await store.create_voice(NewVoice(
        id="voice_fuzz", provider="fake", provider_voice_id="en-1", owner=user.id,
        name="Fuzz", language="en", languages=("en",), status=VoiceStatus.completed,
    ))

    async def enqueue(job: SpeechJob) -> None:
        await trio.lowlevel.checkpoint()

    async def readiness() -> dict[str, bool]:
        return {}

    voices = VoiceCatalog(store, provider)
    intake = Intake(settings, store=store, blobs=blobs, provider=provider, voices=voices,
                    enqueue=enqueue)
    ctx = WebContext(settings=settings, store=store, blobs=blobs, provider=provider,
                     intake=intake, readiness=readiness, voices=voices)
    headers = {"Authorization": f"Bearer {key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    client = create_app(ctx).test_client()
    with trio.fail_after(REQUEST_CAP_S):
        if method == "POST":
            response = await client.post("/v1/jobs", data=body, headers=headers)
        else:
            response = await client.patch("/v1/voices/voice_fuzz", data=body, headers=headers)
        return response.status_code, response.mimetype, await response.get_data()


def check(method: str, body: bytes, content_type: str | None, codes: frozenset[str]) -> None:
    status, mimetype, data = trio.run(answer, method, body, content_type)
    assert status < 500, (status, data[:300])
    if status < 300:
        event(str(status))  # --hypothesis-show-statistics shows what the examples reached
        return
    assert mimetype == PROBLEM, (status, mimetype, data[:300])
    problem = msgspec.json.decode(data)
    event(f"{status} {problem['code']}")
    assert problem["code"] in codes, (status, problem)
    assert problem["status"] == status and problem["detail"]


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_submit_never_answers_500(kind: str, data: st.DataObject) -> None:
    body = data.draw(JOB_BODIES[kind], label="body")
    check("POST", body, data.draw(content_types, label="content_type"), JOB_CODES)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_patch_voice_never_answers_500(kind: str, data: st.DataObject) -> None:
    body = data.draw(VOICE_BODIES[kind], label="body")
    check("PATCH", body, data.draw(content_types, label="content_type"), VOICE_CODES)


def test_every_code_the_fuzz_accepts_is_documented() -> None:
    documented = set(re.findall(r"`(?:\d{3} )?([a-z_]+)`", README.read_text(encoding="utf-8")))
    assert JOB_CODES | VOICE_CODES <= documented, sorted(JOB_CODES | VOICE_CODES - documented)

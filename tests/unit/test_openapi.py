"""``/openapi.json`` and ``/docs`` (Quart test client on in-memory fakes): every route is in the
document, request bodies are the validating Structs' schemas, the answer Structs match what the
views render, and the docs page is whole without the network."""

from __future__ import annotations

import datetime as dt
import re
import typing
from typing import Any

import msgspec
import pytest

from protocols.dictionaries import AliasRule, Dictionary, PhonemeRule
from protocols.messages import (
    ApiKey,
    DictionaryRef,
    Job,
    JobRequest,
    JobStatus,
    Lane,
    SpeechParams,
    Usage,
    User,
    Visibility,
    Voice,
    VoiceSettings,
    VoiceStatus,
)
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from protocols.storybooks import (
    BookStatus,
    CastMember,
    Line,
    LineStatus,
    RetryRound,
    Storybook,
)
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore
from web.app import create_app
from web.compat.requests import ElevenLabsSpeech, OpenAISpeech, ResponseFormat
from web.context import WebContext
from web.openapi import catalog, compat_shapes, shapes
from web.openapi.document import REF, path_of
from web.routes import openai_speech, voice_bodies
from web.routes.admin_users import key_view, user_view
from web.routes.compat_models import el_models, openai_models
from web.routes.dictionaries import changed_view, dictionary_view
from web.routes.el_account import el_voice, history_item, subscription
from web.routes.voices import voice_view
from web.views import job_view, storybook_summary, storybook_view

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
#: routes deliberately without a catalog row, each with its reason (none today: a route added
#: later gets its row in ``web/openapi/catalog.py``, or a line here saying why not)
UNDESCRIBED: frozenset[tuple[str, str]] = frozenset()


def app() -> Any:
    ctx = WebContext(settings=Settings(), store=FakeJobStore(), blobs=FakeBlobStore(),
                     provider=FakeProvider(voices=TEST_VOICES), intake=None,  # type: ignore[arg-type]
                     readiness=None)  # type: ignore[arg-type]
    return create_app(ctx)


async def document() -> tuple[Any, dict[str, Any]]:
    quart = app()
    r = await quart.test_client().get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return quart, await r.get_json()


async def test_every_route_and_method_is_in_the_document() -> None:
    quart, doc = await document()
    assert doc["openapi"] == "3.1.0"
    for rule in quart.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path, params = path_of(rule.rule)
        assert path in doc["paths"], rule.rule
        for method in (rule.methods or set()) - {"OPTIONS", "HEAD"}:
            op = doc["paths"][path][method.lower()]
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(rule.arguments), (method, rule.rule)
    # the table names no route that does not exist (a renamed route is noticed)
    rules = {(m, r.rule) for r in quart.url_map.iter_rules() for m in r.methods or ()}
    assert set(catalog.OPERATIONS) <= rules, set(catalog.OPERATIONS) - rules


def test_every_route_has_a_catalog_row() -> None:
    """A route added without describing it fails here (``undescribed`` is only a fallback)."""
    missing = {
        (method, rule.rule)
        for rule in app().url_map.iter_rules() if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"OPTIONS", "HEAD"}
    } - set(catalog.OPERATIONS) - UNDESCRIBED
    assert not missing, f"add these to web/openapi/catalog.py: {sorted(missing)}"


async def test_compatible_routes_document_their_own_error_shapes() -> None:
    _, doc = await document()
    quota = doc["paths"]["/v1/text-to-speech/{voice_id}"]["post"]["responses"]["401"]
    schema = quota["content"]["application/json"]["schema"]["allOf"]
    assert schema[0]["$ref"].endswith("/ElevenLabsError")
    assert {"unauthorized", "quota_exceeded"} <= set(quota["x-problem-codes"])  # EL_STATUS
    assert "429" not in doc["paths"]["/v1/text-to-speech/{voice_id}"]["post"]["responses"]
    spent = doc["paths"]["/v1/audio/speech"]["post"]["responses"]["429"]
    assert spent["content"]["application/json"]["schema"]["allOf"][0]["$ref"].endswith(
        "/OpenAIError")
    assert spent["x-problem-codes"] == ["insufficient_quota"]
    models = doc["paths"]["/v1/models"]["get"]["responses"]["401"]["content"]
    assert len(models["application/json"]["schema"]["anyOf"]) == 2
    assert "application/problem+json" in doc["paths"]["/v1/jobs"]["get"]["responses"]["422"][
        "content"]


def test_the_documented_bodies_are_the_ones_the_routes_decode() -> None:
    """No doc-only copy: the catalog names the very Structs the routes decode with."""
    ops = catalog.OPERATIONS
    for rule in ("", "/stream", "/with-timestamps", "/stream/with-timestamps"):
        assert ops[("POST", f"/v1/text-to-speech/<voice_id>{rule}")].body is ElevenLabsSpeech
    assert ops[("POST", "/v1/audio/speech")].body is OpenAISpeech
    assert ops[("PATCH", "/v1/voices/<voice_id>")].body is voice_bodies.VoicePatch
    assert ops[("POST", "/v1/voices/<voice_id>/preview")].body is voice_bodies.PreviewRequest
    # every format the Struct lets through is one the route can make
    assert set(typing.get_args(ResponseFormat)) == set(openai_speech.FORMATS)


async def test_request_bodies_are_the_validating_structs_schemas() -> None:
    _, doc = await document()
    schemas = doc["components"]["schemas"]
    checked = 0
    for (method, rule), op in catalog.OPERATIONS.items():
        if op.body is None:
            continue
        body = doc["paths"][path_of(rule)[0]][method.lower()]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == REF.format(name=op.body.__name__)
        _, own = msgspec.json.schema_components([op.body], ref_template=REF)
        for name, schema in own.items():
            assert schemas[name] == msgspec.json.decode(msgspec.json.encode(schema)), name
        checked += 1
    assert checked >= 8
    assert catalog.OPERATIONS[("POST", "/v1/jobs")].body is JobRequest


async def test_errors_are_problems_with_their_codes_and_keys_are_the_security() -> None:
    _, doc = await document()
    submit = doc["paths"]["/v1/jobs"]["post"]
    assert submit["security"] == [{"bearer": []}, {"xi-api-key": []}]
    assert doc["components"]["securitySchemes"]["xi-api-key"] == {
        "type": "apiKey", "in": "header", "name": "xi-api-key",
        "description": "an API key (ElevenLabs' header)",
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for status, codes in {"401": "unauthorized", "413": "text_too_long",
                          "429": "quota_exceeded", "503": "queue_full"}.items():
        answer = submit["responses"][status]
        assert codes in answer["x-problem-codes"]
        assert f"`{codes}`" in answer["description"]
        schema = answer["content"]["application/problem+json"]["schema"]
        assert schema["allOf"][0]["$ref"].endswith("Problem")
        assert codes in schema["allOf"][1]["properties"]["code"]["enum"]
    assert "Retry-After" in submit["responses"]["503"]["headers"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def job() -> Job:
    return Job(
        id="job_1", owner="u1", status=JobStatus.failed, text="hi", voice_id="v1",
        language="en", output_format="mp3_44100_128", idempotency_key="k", request_hash="h",
        attempts=2, characters=2, error_code="x", error_message="y", audio_id="a1",
        created_at=NOW, started_at=NOW, finished_at=NOW,
        params=SpeechParams(model_id="m", voice_settings=VoiceSettings(stability=0.5), seed=3,
                            dictionaries=(DictionaryRef(pronunciation_dictionary_id="d"),)),
        cached=True, request_ids=("r1",), character_cost=2, lane=Lane.batch,
        metadata={"a": [1]},
    )


def voice() -> Voice:
    return Voice(
        id="v1", provider="fake", provider_voice_id="p", owner="u1", name="n", description="d",
        labels={"a": "b"}, language="en", languages=("en",), category="cloned",
        status=VoiceStatus.failed, status_reason="why", visibility=Visibility.private,
        preview_audio_id="a1", preview_job_id="j2", created_at=NOW, updated_at=NOW,
        voice_settings=VoiceSettings(speed=1.0), preview_audio_job_id="j1",
    )


def book() -> Storybook:
    return Storybook(
        id="b1", owner="u1", title="t", language="en", output_format="mp3_44100_128",
        cast={"n": CastMember(voice_id="v1")}, status=BookStatus.partial, pause_line_ms=1,
        pause_page_ms=2, page_titles=("p",), lines_total=1, characters=2, created_at=NOW,
        updated_at=NOW, metadata={"m": 1}, idempotency_key="k", round=1, cancel_requested=True,
        finished_at=NOW, dictionaries=(DictionaryRef(pronunciation_dictionary_id="d"),),
    )


def strict(struct: type) -> type:
    """``struct`` refusing keys it does not describe (every field of every view is described)."""
    return msgspec.defstruct(struct.__name__, [], bases=(struct,), forbid_unknown_fields=True)


def views() -> list[tuple[type, Any]]:
    line = Line(id="l1", book_id="b1", page=0, index=0, speaker="n", text="hi", voice_id="v1",
                voice_settings=None, status=LineStatus.failed, job_id="j1", attempts=1,
                round=1, error_code="x", error_message="y", audio_id="a1", duration_s=1.25)
    retry = RetryRound(book_id="b1", number=1, requested_by="u1", requested_at=NOW,
                       scope="failed", forced=True, line_ids=("l1",), succeeded=1, failed=0,
                       finished_at=NOW)
    rules = (AliasRule(string_to_replace="a", alias="b"),
             PhonemeRule(string_to_replace="c", phoneme="d", alphabet="ipa"))
    dictionary = Dictionary(id="d1", owner="u1", name="n", description="d",
                            visibility=Visibility.public, version_id="v", rules_num=2,
                            created_at=NOW, updated_at=NOW, rules=rules)
    usage = Usage(period_start="2026-01-01", resets_at="2026-02-01T00:00:00.000Z", limit=None,
                  used=3, reserved=1, jobs_charged=2)
    return [
        (shapes.JobView, job_view(job())),
        (shapes.JobView, job_view(msgspec.structs.replace(job(), error_code=None,
                                                          audio_id=None, started_at=None))),
        (shapes.VoiceView, voice_view(voice(), "u1")),
        (shapes.VoiceView, voice_view(voice(), "someone else")),
        (shapes.StorybookSummary, storybook_summary(book())),
        (shapes.StorybookView, storybook_view(book(), [line], [retry])),
        (shapes.DictionaryView, dictionary_view(dictionary, "u1", rules=True)),
        (shapes.DictionaryChanged, changed_view(dictionary)),
        (shapes.UserView, user_view(User(id="u1", name="n", role="admin", created_at=NOW,
                                         monthly_quota=5))),
        (shapes.KeyView, key_view(ApiKey(id="k1", owner="u1", label="l", created_at=NOW,
                                         revoked_at=NOW), "secret")),
        (compat_shapes.ElevenLabsVoice, el_voice(voice(), "u1")),
        (compat_shapes.Subscription, subscription(usage)),
        (compat_shapes.HistoryItem, history_item(job())),
        (compat_shapes.OpenAIModels, openai_models()),
    ]


@pytest.mark.parametrize("index", range(len(views())))
def test_the_answer_structs_describe_what_the_views_render(index: int) -> None:
    struct, view = views()[index]
    as_json = msgspec.json.decode(msgspec.json.encode(view))
    msgspec.convert(as_json, strict(struct))  # no key the Struct lacks, every type right
    required = {f.encode_name for f in msgspec.structs.fields(struct) if f.required}
    assert required <= set(as_json), required - set(as_json)


async def test_the_elevenlabs_models_struct_describes_the_models_answer() -> None:
    for model in await el_models(FakeProvider(voices=TEST_VOICES), 5000):
        msgspec.convert(msgspec.json.decode(msgspec.json.encode(model)),
                        strict(compat_shapes.ElevenLabsModel))


async def test_the_docs_page_and_everything_it_loads_come_from_chorus() -> None:
    client = app().test_client()
    r = await client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = await r.get_data(as_text=True)
    assert not re.search(r"(?:https?:)?//", page.replace("<!DOCTYPE html>", "")), page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css",
            "/docs/static/docs.js"} <= set(assets)
    for asset in assets:
        got = await client.get(asset)
        assert got.status_code == 200, asset
        assert len(await got.get_data()) > 0, asset
    started = await (await client.get("/docs/static/docs.js")).get_data(as_text=True)
    assert 'url: "/openapi.json"' in started and "http" not in started
    missing = await client.get("/docs/static/swagger-editor.js")  # in the package, not served
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"

"""The compatible speech bodies and the voice PATCH / preview bodies are decoded by the Structs
``/openapi.json`` shows (``web.inputs.decode_as``), on in-memory fakes (Quart test client):
what they accept and ignore, and that every refusal names its field (``field`` in a problem,
``param`` in OpenAI's error, the path in ElevenLabs' message)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import pytest
import trio

from protocols.messages import Job, VoiceSettings
from tests.unit.test_voices import VEnv, add_voice
from tests.unit.test_voices import venv as venv  # the fixture
from tests.unit.test_web import Env, capped, post_job, problem_of
from tests.unit.test_web import env as env  # the fixture
from web.inputs import field_of

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello."}


class Where(msgspec.Struct):
    at: str


class Shape(msgspec.Struct):
    text: str
    where: Where | None = None
    items: list[Where] | None = None
    labels: dict[str, str] | None = None
    keyed: dict[Annotated[str, msgspec.Meta(min_length=1)], int] | None = None


def error_of(raw: Any, kind: type = Shape) -> msgspec.ValidationError:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(raw, kind)
    return caught.value


def test_field_of_spells_the_path_as_reject_nul_does() -> None:
    assert field_of(error_of({})) == "text"
    assert field_of(error_of({"text": 1})) == "text"
    assert field_of(error_of({"text": "", "where": {}})) == "where.at"
    assert field_of(error_of({"text": "", "items": [{"at": ""}, {"at": 2}]})) == "items[1].at"
    assert field_of(error_of({"text": "", "labels": {"mood": 1}})) == "labels"
    assert field_of(error_of({"text": "", "keyed": {"": 1}})) == "keyed"  # a key
    assert field_of(error_of([])) is None  # the body as a whole


def following(seen: list[Job]) -> Any:
    async def follow(job: Job) -> AsyncIterator[bytes]:
        seen.append(job)
        await trio.lowlevel.checkpoint()
        yield b"audio"

    return follow


@capped
async def test_a_job_body_refusal_names_the_field(env: Env) -> None:
    for body, field in (({"text": 5}, "text"), ({}, "text"),
                        ({"text": "Hi.", "voice_settings": {"speed": 3}}, "voice_settings.speed"),
                        ({"text": "Hi.", "pronunciation_dictionary_locators": [
                            {"pronunciation_dictionary_id": ""}]},
                         "pronunciation_dictionary_locators[0].pronunciation_dictionary_id")):
        problem = await problem_of(await post_job(env, body), 422, "invalid_input")
        assert problem["field"] == field, (body, problem)
    problem = await problem_of(await post_job(env, {"text": "Hi.", "b": 1, "a": 2}), 422,
                               "unknown_field")
    assert problem["fields"] == ["a", "b"]
    assert not env.submitted


# --- ElevenLabs ---------------------------------------------------------------------------------


@capped
async def test_elevenlabs_accepts_and_ignores_what_chorus_does_not_read(env: Env) -> None:
    env.ctx = dataclasses.replace(env.ctx, follow_audio=following([]))
    body = {"text": "Hi.", "voice_settings": {"stability": 0.5, "clone_strength": 1,
                                              "style": None},
            "seed": 7, "apply_text_normalization": "auto", "previous_request_ids": ["a"],
            "model_id": None}
    r = await env.client().post("/v1/text-to-speech/en-1/stream",
                                headers={"xi-api-key": env.key}, json=body)
    assert r.status_code == 200, await r.get_data(as_text=True)
    (job,) = env.submitted
    assert job.params.voice_settings == VoiceSettings(stability=0.5) and job.params.seed == 7


@capped
async def test_elevenlabs_refusals_name_the_field(env: Env) -> None:
    cases = {
        "`text`": {},
        "$.text": {"text": 5},
        "$.voice_settings.stability": {"text": "Hi.", "voice_settings": {"stability": 2}},
        "$.voice_settings`": {"text": "Hi.", "voice_settings": "calm"},
        "$.previous_request_ids`": {"text": "Hi.", "previous_request_ids": list("abcd")},
        "$.next_request_ids[0]": {"text": "Hi.", "next_request_ids": [1]},
        "$.seed": {"text": "Hi.", "seed": True},  # a bool is not a number
        "$.model_id": {"text": "Hi.", "model_id": 5},
        "$.language_code": {"text": "Hi.", "language_code": ""},
        "$.pronunciation_dictionary_locators[0]": {
            "text": "Hi.", "pronunciation_dictionary_locators": [{"id": "d"}]},
    }
    client = env.client()
    for named, body in cases.items():
        r = await client.post("/v1/text-to-speech/en-1", headers={"xi-api-key": env.key},
                              json=body)
        detail = (await r.get_json())["detail"]
        assert r.status_code == 422 and detail["status"] == "invalid_input", (body, detail)
        assert named in detail["message"], (named, detail)
    assert not env.submitted


# --- OpenAI -------------------------------------------------------------------------------------


@capped
async def test_openai_voice_as_name_or_id_and_speed_held_to_the_settings_range(env: Env) -> None:
    seen: list[Job] = []
    env.ctx = dataclasses.replace(env.ctx, follow_audio=following(seen))
    client = env.client()
    for extra in ({"voice": {"id": "en-1"}, "speed": 4}, {"voice": "alloy", "speed": 0.25},
                  {"voice": {"id": "alloy"}, "unknown": 1}):
        r = await client.post("/v1/audio/speech", headers=env.auth, json={**SPEECH, **extra})
        assert r.status_code == 200, await r.get_data(as_text=True)
    assert [j.voice_id for j in seen] == ["en-1"] * 3  # alloy: the first English voice
    assert [j.params.voice_settings for j in env.submitted] == [
        VoiceSettings(speed=1.2), VoiceSettings(speed=0.7), None]


@capped
async def test_openai_refusals_name_the_param(env: Env) -> None:
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("response_format", {"response_format": "ogg"}, 400, "unsupported_response_format"),
        ("response_format", {"response_format": None}, 400, "unsupported_response_format"),
        ("speed", {"speed": True}, 422, "invalid_input"),
        ("speed", {"speed": 9}, 422, "invalid_input"),
        ("voice", {"voice": 5}, 422, "invalid_input"),
        ("voice", {"voice": "v" * 129}, 422, "invalid_input"),
        ("voice.id", {"voice": {}}, 422, "invalid_input"),
        ("voice.id", {"voice": {"id": ""}}, 422, "invalid_input"),
        ("model", {"model": ""}, 422, "invalid_input"),
        ("instructions", {"instructions": "x" * 4097}, 422, "invalid_input"),
        ("stream_format", {"stream_format": "chunks"}, 422, "invalid_input"),
        ("input", {"input": None}, 422, "invalid_input"),
    ]
    client = env.client()
    for param, change, status, code in cases:
        r = await client.post("/v1/audio/speech", headers=env.auth, json={**SPEECH, **change})
        error = (await r.get_json())["error"]
        assert (r.status_code, error["code"], error["param"]) == (status, code, param), error
        assert error["type"] == "invalid_request_error"
    r = await client.post("/v1/audio/speech", headers=env.auth, json={"model": "tts-1"})
    assert (await r.get_json())["error"]["param"] == "input"  # the first field missing
    assert not env.submitted


# --- voices -------------------------------------------------------------------------------------


@capped
async def test_voice_patch_refusals_name_the_field_and_change_nothing(venv: VEnv) -> None:
    c, alice = venv.client(), venv.auth("alice")
    mine = await add_voice(venv, "alice")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": 5}, "invalid_name", "name"),
        ({"name": None}, "invalid_name", "name"),
        ({"name": "x" * 101}, "invalid_name", "name"),
        ({"labels": {"mood": 1}}, "invalid_labels", "labels"),
        ({"labels": {"": "x"}}, "invalid_labels", "labels"),
        ({"labels": {str(i): "x" for i in range(11)}}, "invalid_labels", "labels"),
        ({"voice_settings": {"stability": 2}}, "invalid_input", "voice_settings.stability"),
        ({"voice_settings": {"loudness": 1}}, "invalid_input", "voice_settings"),
        ({"visibility": "secret"}, "invalid_input", "visibility"),
        ({"description": 5}, "invalid_input", "description"),
    ]
    for body, code, field in cases:
        response = await c.patch(f"/v1/voices/{mine}", headers=alice, json=body)
        problem = await problem_of(response, 422, code)
        assert problem["field"] == field, (body, problem)
    response = await c.patch(f"/v1/voices/{mine}", headers=alice, json={"zap": 1, "nope": 2})
    assert (await problem_of(response, 422, "unknown_field"))["fields"] == ["nope", "zap"]
    # another user's voice is not found, whatever the body
    response = await c.patch(f"/v1/voices/{mine}", headers=venv.auth("bob"), json={"name": 5})
    await problem_of(response, 404, "voice_not_found")
    assert venv.store.calls["update_voice"] == 0


@capped
async def test_voice_patch_null_clears_and_absent_keeps(venv: VEnv) -> None:
    c, alice = venv.client(), venv.auth("alice")
    mine = await add_voice(venv, "alice")
    body = {"description": "Warm.", "labels": '{"mood": "calm"}',
            "voice_settings": {"speed": 1.1}, "visibility": "public"}
    r = await c.patch(f"/v1/voices/{mine}", headers=alice, json=body)
    view = await r.get_json()
    assert view["labels"] == {"mood": "calm"} and view["voice_settings"] == {"speed": 1.1}
    r = await c.patch(f"/v1/voices/{mine}", headers=alice, json={"name": "Renamed"})
    view = await r.get_json()
    assert view["description"] == "Warm." and view["visibility"] == "public"
    r = await c.patch(f"/v1/voices/{mine}", headers=alice, json=dict.fromkeys(body))
    view = await r.get_json()
    assert view["description"] == "" and view["labels"] == {}
    assert view["voice_settings"] == {} and view["visibility"] == "private"
    assert view["name"] == "Renamed"


@capped
async def test_preview_request_refusals_name_the_field(venv: VEnv) -> None:
    c, alice = venv.client(), venv.auth("alice")
    mine = await add_voice(venv, "alice")
    for body, field in (({"text": 5}, "text"), ({"idempotency_key": ""}, "idempotency_key"),
                        ({"idempotency_key": "k" * 256}, "idempotency_key")):
        response = await c.post(f"/v1/voices/{mine}/preview", headers=alice, json=body)
        assert (await problem_of(response, 422, "invalid_input"))["field"] == field, body
    response = await c.post(f"/v1/voices/{mine}/preview", headers=alice, json={"voice": "x"})
    assert (await problem_of(response, 422, "unknown_field"))["fields"] == ["voice"]
    assert not venv.submitted

"""Bad bytes are 4xx, never 500 (issue 13): bodies that are not UTF-8, JSON nested 10,000 deep,
U+0000 in stored strings and in ids, texts with nothing speakable, multi-range requests.

The fakes refuse U+0000 the way Postgres does (a bare ``ChorusError``, a 500), so a NUL that
slips past the edge shows here as it would in production.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from protocols.messages import NewVoice, VoiceStatus
from tests.unit import test_voices, test_web
from tests.unit.test_voices import MP3, VEnv, post_clone
from tests.unit.test_web import Env, capped, post_job, problem_of
from web.inputs import MAX_JSON_DEPTH, nests_deeper

# the fixtures of the two route suites, shared (pytest finds them by their own names)
env = test_web.env
venv = test_voices.venv

JSON = {"Content-Type": "application/json"}


def deep(levels: int, inner: bytes = b"1") -> bytes:
    return b"[" * levels + inner + b"]" * levels


async def own_voice(store: Any, owner: str) -> str:
    voice = await store.create_voice(NewVoice(
        id="voice_mine", provider="fake", provider_voice_id="en-1", owner=owner, name="Mine",
        language="en", languages=("en",), status=VoiceStatus.completed,
    ))
    return voice.id


def roomy(env: Env) -> None:
    """Bodies up to the default text limit (~30 KB), so 10,000 levels fit under the 413."""
    env.ctx = dataclasses.replace(
        env.ctx, settings=msgspec.structs.replace(env.settings, max_text_chars=5000)
    )


# --- bytes that are not UTF-8 ---------------------------------------------------------------


@capped
async def test_a_body_that_is_not_utf8_is_400_malformed_json(env: Env) -> None:
    voice = await own_voice(env.store, env.user.id)
    client = env.client()
    for raw in (b'{"text": "caf\xe9"}', b'{"text": "\xed\xa0\x80"}', b'{"text": "\xc3"}'):
        response = await client.post("/v1/jobs", data=raw, headers={**env.auth, **JSON})
        body = await problem_of(response, 400, "malformed_json")
        assert "UTF-8" in body["detail"]
        response = await client.patch(f"/v1/voices/{voice}", data=raw, headers={**env.auth, **JSON})
        await problem_of(response, 400, "malformed_json")
    assert not env.store.jobs and not env.submitted


# --- nesting --------------------------------------------------------------------------------


@capped
async def test_json_nested_10000_deep_is_400_json_too_deep(env: Env) -> None:
    roomy(env)
    voice = await own_voice(env.store, env.user.id)
    client = env.client()
    for raw in (deep(10_000), b'{"text": "hi", "voice_settings": ' + deep(10_000) + b"}",
                b'{"a":' * 5_000 + b"1" + b"}" * 5_000):
        response = await client.post("/v1/jobs", data=raw, headers={**env.auth, **JSON})
        body = await problem_of(response, 400, "json_too_deep")
        assert body["limit"] == MAX_JSON_DEPTH
        response = await client.patch(f"/v1/voices/{voice}", data=raw, headers={**env.auth, **JSON})
        await problem_of(response, 400, "json_too_deep")
    assert not env.store.jobs


@capped
async def test_brackets_inside_strings_do_not_count_as_nesting(env: Env) -> None:
    text = "[" * 60 + '{"\\"' + "]" * 10
    assert (await post_job(env, {"text": text})).status_code == 202
    # nesting within the bound is decoded and judged on its types as before
    shallow = b'{"text": "hi", "voice_settings": ' + deep(MAX_JSON_DEPTH - 2) + b"}"
    response = await env.client().post("/v1/jobs", data=shallow, headers={**env.auth, **JSON})
    await problem_of(response, 422, "invalid_input")


def test_nests_deeper_counts_only_structure() -> None:
    assert not nests_deeper(deep(32)) and nests_deeper(deep(33))
    assert not nests_deeper(b'["' + b"[" * 100 + b'"]')
    assert not nests_deeper(b'["\\"' + b"[" * 100 + b'"]')  # an escaped quote ends nothing
    assert nests_deeper(b'["' + b"[" * 100)  # unterminated: refused anyway
    assert not nests_deeper(b"[]" * 1000 + b"{}" * 1000)


# --- U+0000 ---------------------------------------------------------------------------------


@capped
async def test_nul_in_a_job_field_is_422_naming_it_before_the_store(env: Env) -> None:
    cases = {
        "text": {"text": "hello\u0000world"},
        "idempotency_key": {"text": "hi", "idempotency_key": "k\u0000"},
        "voice_id": {"text": "hi", "voice_id": "en-1\u0000"},
        "language": {"text": "hi", "language": "en\u0000"},
        "model_id": {"text": "hi", "model_id": "\u0000"},
        "pronunciation_dictionary_locators[0].pronunciation_dictionary_id": {
            "text": "hi",
            "pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": "d\u0000"}],
        },
    }
    for field, body in cases.items():
        problem = await problem_of(await post_job(env, body), 422, "invalid_character")
        assert problem["field"] == field and field in problem["detail"]
    header = {"Idempotency-Key": "key\u0000"}
    problem = await problem_of(await post_job(env, {"text": "hi"}, header), 422,
                               "invalid_character")
    assert problem["field"] == "Idempotency-Key"
    assert env.store.calls["create_job"] == 0 and not env.submitted
    # a backslash followed by "u0000" is text, not a NUL
    assert (await post_job(env, {"text": "say \\u0000"})).status_code == 202


@capped
async def test_nul_in_voice_fields_is_422_naming_them(venv: VEnv) -> None:
    c, alice = venv.client(), venv.auth("alice")
    mine = await test_voices.add_voice(venv, "alice")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("name", {"name": "a\u0000"}),
        ("description", {"description": "\u0000"}),
        ("labels.mood", {"labels": {"mood": "x\u0000"}}),
        ("labels.m\\u0000", {"labels": {"m\u0000": "x"}}),
        ("labels.mood", {"labels": '{"mood": "x\\u0000"}'}),  # JSON text, decoded later
    ]
    for field, body in cases:
        response = await c.patch(f"/v1/voices/{mine}", headers=alice, json=body)
        problem = await problem_of(response, 422, "invalid_character")
        assert problem["field"] == field, body
    assert venv.store.calls["update_voice"] == 0
    for form in ({"name": "Fox\u0000"}, {"name": "Fox", "description": "\u0000"},
                 {"name": "Fox", "labels": '{"a": "\\u0000"}'},
                 {"name": "Fox", "language": "en\u0000"}):
        response = await post_clone(c, alice, form, [MP3])
        await problem_of(response, 422, "invalid_character")
    assert not venv.manager.uploads and venv.store.calls["create_voice"] == 1  # add_voice


@capped
async def test_labels_text_nested_too_deep_is_422_invalid_labels(venv: VEnv) -> None:
    c, alice = venv.client(), venv.auth("alice")
    mine = await test_voices.add_voice(venv, "alice")
    labels = "[" * 2000 + "]" * 2000  # within the body limit, past the decoder's
    response = await c.patch(f"/v1/voices/{mine}", headers=alice, json={"labels": labels})
    await problem_of(response, 422, "invalid_labels")
    response = await post_clone(c, alice, {"name": "Fox", "labels": labels}, [MP3])
    await problem_of(response, 422, "invalid_labels")


@capped
async def test_nul_in_an_id_in_the_path_is_404_without_asking_the_store(env: Env) -> None:
    client = env.client()
    for path, code in (
        ("/v1/audio/aud_x%00.mp3", "not_found"),
        ("/v1/jobs/job_x%00", "not_found"),
        ("/v1/jobs/job_x%00/events", "not_found"),
        ("/v1/voices/en-1%00", "voice_not_found"),
        ("/v1/voices/en-1%00/preview", "voice_not_found"),
    ):
        await problem_of(await client.get(path, headers=env.auth), 404, code)
    head = await client.head("/v1/audio/aud_x%00.mp3", headers=env.auth)
    assert head.status_code == 404
    for method in ("patch", "delete"):
        response = await getattr(client, method)("/v1/voices/en-1%00", headers=env.auth,
                                                 json={"name": "x"})
        await problem_of(response, 404, "voice_not_found")
    assert not any(env.store.calls[m] for m in ("get_audio", "get_job", "get_voice"))


@capped
async def test_nul_in_a_voice_query_is_refused(env: Env) -> None:
    client = env.client()
    for query in ("search=a%00b", "language=en%00"):
        problem = await problem_of(await client.get(f"/v1/voices?{query}", headers=env.auth),
                                   422, "invalid_character")
        assert problem["field"] == query.split("=")[0]
    await problem_of(await client.get("/v1/voices?cursor=dm9pY2UAeA", headers=env.auth), 400,
                     "invalid_cursor")  # base64 of "voice\0x"
    assert env.store.calls["list_voices"] == 0


# --- nothing speakable ----------------------------------------------------------------------


@capped
async def test_text_with_nothing_speakable_is_422_text_empty(env: Env) -> None:
    for text in ("\u200b\u200b", "\u2060", "\ufeff", " \u200b \u200c\u200d\n\u2060 ", "\u00ad",
                 "\u0301"):
        await problem_of(await post_job(env, {"text": text}), 422, "text_empty")
    assert not env.store.jobs and not env.submitted and env.store.calls["create_job"] == 0
    assert (await post_job(env, {"text": "\u200bhi\u200b"})).status_code == 202
    assert (await post_job(env, {"text": "?"})).status_code == 202


# --- ranges ---------------------------------------------------------------------------------


@capped
async def test_a_multi_range_request_gets_the_whole_body(env: Env) -> None:
    job_id = (await (await post_job(env, {"text": "hi"})).get_json())["id"]
    audio_id = await env.finish(job_id, b"0123456789")
    client = env.client()
    for value in ("bytes=0-1,5-9", "bytes=5-9,0-1", "bytes=0-1, 1-3", "items=0-1", "bytes=x"):
        response = await client.get(f"/v1/audio/{audio_id}", headers={**env.auth,
                                                                      "Range": value})
        assert response.status_code == 200, value
        assert await response.get_data() == b"0123456789"
        assert "Content-Range" not in response.headers
    one = await client.get(f"/v1/audio/{audio_id}", headers={**env.auth, "Range": "bytes=7-9"})
    assert one.status_code == 206 and await one.get_data() == b"789"
    etag = f'"ab{job_id}"'
    cached = await client.get(f"/v1/audio/{audio_id}", headers={
        **env.auth, "Range": "bytes=0-1,5-9", "If-None-Match": etag})
    assert cached.status_code == 304

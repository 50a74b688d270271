"""The official ``openai`` SDK pointed at a live Chorus (real Valkey and Postgres, the fake
provider): ``audio.speech.create`` in every OpenAI format, streamed and as SSE, at the
``/v1`` and the ``/openai/v1`` base URL; ``models.list`` in OpenAI's shape; OpenAI-shaped
errors; a repeated request costs no provider call and no characters. The sync client runs in a
worker thread."""

from __future__ import annotations

import base64
import json
from functools import partial

import httpx
import openai
import pytest
import trio

from protocols.providers.fake import CLIP_S
from tests.support.decoded import decoded_seconds
from tests.support.harness import make_settings, running_service

LIMIT_S = 60


def plausible(data: bytes, *, raw_rate: int | None = None) -> None:
    seconds = decoded_seconds(data, raw_rate=raw_rate)
    assert CLIP_S - 0.02 <= seconds <= CLIP_S + 0.1, seconds


def used(base: str, key: str) -> int:
    r = httpx.get(f"{base}/v1/usage", headers={"Authorization": f"Bearer {key}"})
    return r.json()["used"]


def drive(base: str, key: str, provider) -> None:
    client = openai.OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0, timeout=20)
    alias = openai.OpenAI(api_key=key, base_url=f"{base}/openai/v1", max_retries=0, timeout=20)
    speech = client.audio.speech

    for c in (client, alias):
        assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= {m.id for m in c.models.list()}

    text = "Hello from the OpenAI SDK."
    plausible(speech.create(model="tts-1", voice="alloy", input=text).content)
    calls, spent = provider.calls, used(base, key)
    assert spent == len(text)
    raw = speech.with_raw_response.create(model="tts-1", voice="alloy", input=text)
    plausible(raw.content)
    assert raw.headers["character-cost"] == "0"
    assert provider.calls == calls and used(base, key) == spent, "a repeat was paid again"

    for fmt in ("opus", "wav", "aac", "flac"):
        plausible(speech.create(model="tts-1-hd", voice="nova", input=f"As {fmt}.",
                                response_format=fmt).content)
    plausible(speech.create(model="tts-1", voice="echo", input="Raw samples.",
                            response_format="pcm").content, raw_rate=24000)
    plausible(alias.audio.speech.create(
        model="gpt-4o-mini-tts", voice="fake-en", input="Through the alias base URL.",
        instructions="Speak cheerfully.", speed=1.5).content)
    with speech.with_streaming_response.create(
        model="tts-1", voice="shimmer", input="Streamed to the client.", stream_format="audio",
    ) as streamed:
        plausible(b"".join(streamed.iter_bytes()))

    sse = speech.create(model="gpt-4o-mini-tts", voice="coral", input="Events, please.",
                        stream_format="sse").content.decode()
    events = [json.loads(line[len("data: "):]) for line in sse.splitlines()
              if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    assert all(e["type"] == "speech.audio.delta" for e in events[:-1]) and len(events) >= 2
    assert events[-1]["usage"]["input_tokens"] == len("Events, please.")
    plausible(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]))

    with pytest.raises(openai.BadRequestError) as ogg:
        speech.create(model="tts-1", voice="alloy", input="x", response_format="ogg")
    assert ogg.value.code == "unsupported_response_format"
    assert ogg.value.param == "response_format" and ogg.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as unknown:
        speech.create(model="tts-1", voice="no-such-voice", input="Nobody.")
    assert unknown.value.code == "voice_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as slow:
        speech.create(model="tts-1", voice="alloy", input="x", speed=9)
    assert slow.value.param == "speed"
    wrong = openai.OpenAI(api_key="not-a-key", base_url=f"{base}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="x")
    assert denied.value.type == "authentication_error"


async def test_the_openai_sdk_works_against_chorus(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(LIMIT_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            _, key = await store.create_user("openai-sdk-user")
            base = str(svc.client.base_url).rstrip("/")
            await trio.to_thread.run_sync(partial(drive, base, key, svc.service.provider),
                                         abandon_on_cancel=True)

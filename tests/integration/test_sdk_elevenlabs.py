"""The official ``elevenlabs`` SDK (2.78) pointed at a live Chorus (real Valkey and Postgres,
the fake provider): every call issue 11 lists works, each clip decodes, timestamps are
monotonic and end with the clip, a repeated convert costs no provider call and no characters,
and another user's history is a 404. The sync client runs in a worker thread."""

from __future__ import annotations

import base64
import time
from functools import partial

import pytest
import trio
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError

from protocols.providers.fake import CLIP_S
from tests.support.decoded import check_alignment, decoded_seconds
from tests.support.harness import make_settings, running_service

LIMIT_S = 60
QUOTA = 10_000


def plausible(data: bytes) -> float:
    seconds = decoded_seconds(data)
    assert CLIP_S - 0.02 <= seconds <= CLIP_S + 0.1, seconds
    return seconds


def drive(client: ElevenLabs, other: ElevenLabs, provider) -> dict:
    """Every call, in order, in a worker thread; returns what the test asserts on after."""
    tts = client.text_to_speech
    seen: dict = {}

    # convert, then the same again: from the cache (no provider call, no characters)
    text = "Hello from the ElevenLabs SDK."
    plausible(b"".join(tts.convert("fake-en", text=text, output_format="mp3_44100_128",
                                   model_id="eleven_multilingual_v2",
                                   voice_settings={"stability": 0.5, "clone_strength": 1},
                                   previous_request_ids=["x"], seed=7)))
    calls = provider.calls
    used = client.user.subscription.get().character_count
    assert used == len(text)
    with tts.with_raw_response.convert("fake-en", text=text, model_id="eleven_multilingual_v2",
                                       voice_settings={"stability": 0.5}, seed=7,
                                       output_format="mp3_44100_128") as raw:
        again = b"".join(raw.data)
        assert raw.headers["character-cost"] == "0" and raw.headers["request-id"]
    plausible(again)
    assert provider.calls == calls, "a repeated convert called the provider"
    assert client.user.subscription.get().character_count == used, "a repeat was charged"

    # the streaming and timestamp calls
    plausible(b"".join(tts.stream("fake-en", text="Streamed words arrive in chunks.",
                                  optimize_streaming_latency=3)))
    stamped_text = "Timestamps for every character."
    stamped = tts.convert_with_timestamps("fake-en", text=stamped_text)
    clip = base64.b64decode(stamped.audio_base_64)
    check_alignment(stamped.alignment, stamped_text, plausible(clip))
    streamed_text = "Streamed timestamps, line by line."
    pieces = list(tts.stream_with_timestamps("fake-en", text=streamed_text,
                                             output_format="mp3_22050_32"))
    clip = b"".join(base64.b64decode(p.audio_base_64) for p in pieces)
    joined = {"characters": [], "character_start_times_seconds": [],
              "character_end_times_seconds": []}
    for piece in pieces:
        if piece.alignment is not None:
            for key, values in joined.items():
                values.extend(getattr(piece.alignment, key))
    check_alignment(joined, streamed_text, plausible(clip))

    # voices, models, the user and the subscription
    first = client.voices.search(page_size=1)
    assert first.has_more and first.total_count == 2 and len(first.voices) == 1
    second = client.voices.search(page_size=1, next_page_token=first.next_page_token)
    assert not second.has_more and second.voices[0].voice_id != first.voices[0].voice_id
    assert [v.voice_id for v in client.voices.search(search="Korean").voices] == ["fake-ko"]
    assert client.voices.get_all().voices
    models = client.models.list()
    assert models and all(m.can_do_text_to_speech for m in models)
    user = client.user.get()
    assert user.user_id and user.subscription.character_limit == QUOTA
    sub = client.user.subscription.get()
    total = len(text) + len("Streamed words arrive in chunks.") + len(stamped_text) + len(
        streamed_text)
    assert sub.character_count == total and sub.character_limit == QUOTA
    assert sub.next_character_count_reset_unix > time.time()

    # history: the caller's jobs, newest first, pages, audio; another user's is a 404
    history = client.history.list(page_size=2)
    assert history.has_more and len(history.history) == 2
    assert history.history[0].text == streamed_text
    rest = client.history.list(start_after_history_item_id=history.last_history_item_id)
    texts = [h.text for h in history.history + rest.history]
    assert texts.count(text) == 2 and stamped_text in texts
    item = history.history[0].history_item_id
    plausible(b"".join(client.history.get_audio(item)))
    with pytest.raises(ApiError) as missing:
        b"".join(other.history.get_audio(item))
    assert missing.value.status_code == 404
    seen["other_history"] = other.history.list().history

    # errors in ElevenLabs' shape
    with pytest.raises(ApiError) as unknown:
        b"".join(tts.convert("no-such-voice", text="Nobody speaks this."))
    assert unknown.value.status_code == 404
    assert unknown.value.body["detail"]["status"] == "voice_not_found"
    with pytest.raises(ApiError) as bad:
        b"".join(tts.convert("fake-en", text="x", output_format="mp3_1_1"))
    assert bad.value.status_code == 422
    assert bad.value.body["detail"]["status"] == "unsupported_output_format"
    return seen


async def test_the_elevenlabs_sdk_works_against_chorus(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(LIMIT_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            _, key = await store.create_user("el-sdk-user")
            await store.set_quota("el-sdk-user", QUOTA)
            _, other_key = await store.create_user("el-sdk-other")
            base = str(svc.client.base_url).rstrip("/")
            client = ElevenLabs(api_key=key, base_url=base, timeout=20)
            other = ElevenLabs(api_key=other_key, base_url=base, timeout=20)
            seen = await trio.to_thread.run_sync(
                partial(drive, client, other, svc.service.provider), abandon_on_cancel=True
            )
            assert seen["other_history"] == []

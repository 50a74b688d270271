"""The ElevenLabs adapter's streaming (``synthesize_streaming``) against the stand-in server's
``/v1/text-to-speech/{voice}/stream/with-timestamps``: chunks relayed as they arrive, the result
is the same bytes with the pieces' alignment joined, a 429 before the first byte is waited out,
and the whole pipeline streams it and stores its timings."""

from __future__ import annotations

import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.providers.elevenlabs.models import FLASH
from tests.integration.test_elevenlabs_adapter import RACHEL, adapter, request
from tests.support.elevenlabs.server import FakeElevenLabs


async def test_chunks_are_relayed_as_they_arrive(tmp_path):
    with FakeElevenLabs(api_key="test-key", stream_chunk_delay_s=0.1) as fake:
        fake.inject(429, "system_busy", times=1)
        async with adapter(fake, tmp_path) as provider:
            chunks: list[tuple[float, bytes]] = []

            async def sink(data: bytes) -> None:
                chunks.append((trio.current_time(), data))

            text = "The stream comes in pieces, as the audio is made far away."
            with trio.fail_after(20):
                result = await provider.synthesize_streaming(request(text, model=FLASH), sink)
        assert len(chunks) >= 2  # a line (4 KiB of audio) at a time, as the server sent them
        assert b"".join(data for _, data in chunks) == result.audio
        assert chunks[-1][0] - chunks[0][0] > 0.09  # the first came well before the last
        fmt = parse_format("mp3_44100_128")
        assert abs(audio_duration(result.audio, fmt) - result.duration_s) < 0.01
        assert result.character_cost == len(text) and result.request_ids
        # the pieces' character times joined: every word, in order, to the clip's end
        assert result.alignment is not None
        words = result.alignment.words
        assert [w.text for w in words] == text.split()
        assert "".join(result.alignment.characters) == text
        for a, b in zip(words, words[1:], strict=False):
            assert a.start_s <= a.end_s <= b.start_s <= b.end_s
        assert abs(words[-1].end_s - audio_duration(result.audio, fmt)) <= 0.1
        stream_calls = [c for c in fake.calls if c.endpoint == "stream-with-timestamps"]
        assert [c.status for c in stream_calls] == [429, 200]  # waited out, once charged
        assert fake.character_count == len(text)


async def test_a_long_text_is_made_whole_and_handed_out_once(tmp_path):
    with FakeElevenLabs(api_key="test-key") as fake:
        fake.model_limits[FLASH] = 40
        async with adapter(fake, tmp_path) as provider:
            chunks: list[bytes] = []

            async def sink(data: bytes) -> None:
                chunks.append(data)

            text = "A first sentence of the tale. A second one that follows it."
            with trio.fail_after(20):
                result = await provider.synthesize_streaming(request(text, model=FLASH), sink)
        assert chunks == [result.audio]
        # made whole, as a text that is not streamed: with its timings
        assert {c.endpoint for c in fake.calls} == {"with-timestamps"}
        assert result.alignment is not None and result.alignment.words
        assert RACHEL in {c.voice_id for c in fake.calls}


async def test_the_pipeline_relays_elevenlabs_while_it_speaks(redis_url, store, tmp_path):
    """A stream job on ElevenLabs: the first chunk reaches the client while the stand-in is
    still sending the rest; the body is the stored clip, with ElevenLabs' timings; one call,
    charged once."""
    from tests.integration.test_cache_and_quota import eleven_service, tts_calls
    from tests.integration.test_timings import check_alignment, decoded_seconds

    text = "Every evening she climbed the hill and watched the boats come home."
    with FakeElevenLabs(api_key="test-key", stream_chunk_delay_s=0.25) as fake:
        async with eleven_service(redis_url, store, tmp_path, fake) as svc:
            with trio.fail_after(45):
                job_id = (await svc.submit(text, stream=True)).json()["id"]
                body = bytearray()
                async with svc.client.stream("GET", f"/v1/jobs/{job_id}/stream") as live:
                    assert live.status_code == 200
                    chunks = live.aiter_bytes()
                    body += await anext(chunks)
                    job = (await svc.client.get(f"/v1/jobs/{job_id}")).json()
                    assert job["status"] == "running", job  # the rest is still on its way
                    async for chunk in chunks:
                        body += chunk
                done = (await svc.wait_done([job_id]))[job_id]
                stored = (await svc.client.get(f"/v1/audio/{done['audio_id']}")).content
                timed = await svc.client.get(f"/v1/jobs/{job_id}/alignment")
            assert bytes(body) == stored
            assert timed.status_code == 200 and timed.json()["source"] == "engine", timed.text
            check_alignment(timed.json(), text, decoded_seconds(stored))
            assert tts_calls(fake, text) == 1 and fake.character_count == len(text)
            assert [c.endpoint for c in fake.calls if c.text == text] == ["stream-with-timestamps"]
            assert (await svc.client.get("/v1/usage")).json()["jobs_charged"] == 1

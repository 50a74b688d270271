"""Storybooks end to end: a real Service (HTTP on 127.0.0.1, the embedded Valkey and Postgres)
with the embedded espeak-ng engine or the fake provider; the book is read back as a client
would (JSON, audio, captions, chapters)."""

from __future__ import annotations

import io
from typing import Any

import av
import trio
import webvtt

from protocols.errors import ProviderRejected
from protocols.providers.espeak import EspeakProvider
from protocols.providers.fake import FakeProvider
from tests.support.harness import Running, make_settings, running_service
from web.client import iter_sse

CAP_S = 90

BOOK: dict[str, Any] = {
    "title": "The Fox and the Moon",
    "language": "en",
    "cast": {
        "Narrator": {"voice_id": "en-gb"},
        "Fox": {"voice_id": "en-us"},
        "Halmeoni": {"voice_id": "ko"},
    },
    "pages": [
        {"title": "Evening", "lines": [
            {"speaker": "Narrator", "text": "Once upon a time, a small fox lived by the forest."},
            {"speaker": "Fox", "text": "I want to touch the moon tonight!"},
        ]},
        {"title": "The hill", "lines": [
            {"speaker": "Halmeoni", "text": "여우야, 달은 너무 멀리 있단다."},
            {"speaker": "Fox", "text": "Then I will climb the tallest hill."},
            {"speaker": "Narrator", "text": "And so he climbed, step by step."},
        ]},
        {"lines": [
            {"speaker": "Halmeoni", "text": "잘 자라, 작은 여우야."},
        ]},
    ],
    "pause_ms": {"line": 300, "page": 900},
    "metadata": {"app_book_id": 42},
}


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


async def wait_book(svc: Running, book_id: str, limit_s: float = 60.0) -> dict[str, Any]:
    with trio.fail_after(limit_s):
        while True:
            r = await svc.client.get(f"/v1/storybooks/{book_id}")
            assert r.status_code == 200, r.text
            body = r.json()
            if body["status"] not in ("queued", "running"):
                return body
            await trio.sleep(0.05)


def lines_of(book: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for page in book["pages"] for line in page["lines"]]


async def test_a_three_page_english_and_korean_book_is_read_aloud_whole(
    redis_url, store, tmp_path
):
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json=BOOK)
            assert r.status_code == 202, r.text
            accepted = r.json()
            assert accepted["lines_total"] == 6 and accepted["status"] == "queued"
            assert accepted["characters"] == sum(
                len(line["text"]) for page in BOOK["pages"] for line in page["lines"]
            )
            book = await wait_book(svc, accepted["id"])
            assert book["status"] == "succeeded", book
            assert book["counts"]["succeeded"] == 6
            assert book["metadata"] == {"app_book_id": 42}
            lines = lines_of(book)
            assert [line["speaker"] for line in lines] == [
                "Narrator", "Fox", "Halmeoni", "Fox", "Narrator", "Halmeoni"
            ]
            assert all(line["audio_id"] and line["job_id"] for line in lines)

            # each line's job is an ordinary job of the caller, carrying its book in metadata
            job = (await svc.client.get(f"/v1/jobs/{lines[2]['job_id']}")).json()
            assert job["voice_id"] == "ko" and job["metadata"]["storybook_id"] == book["id"]

            # the whole book: the lines plus the pauses (2 line pauses + 2 page pauses... )
            clips = []
            for line in lines:
                audio = await svc.client.get(f"/v1/audio/{line['audio_id']}")
                clips.append(decoded_seconds(audio.content))
            whole = await svc.client.get(f"/v1/storybooks/{book['id']}/audio")
            assert whole.status_code == 200
            assert whole.headers["content-type"] == "audio/mpeg"
            pauses = 3 * 0.3 + 2 * 0.9  # within pages: 1 + 2 + 0 line gaps; 2 page gaps
            assert abs(decoded_seconds(whole.content) - (sum(clips) + pauses)) <= 0.05

            # Range works on the book audio
            part = await svc.client.get(
                f"/v1/storybooks/{book['id']}/audio", headers={"Range": "bytes=0-99"}
            )
            assert part.status_code == 206 and part.content == whole.content[:100]

            # one page alone
            page = await svc.client.get(f"/v1/storybooks/{book['id']}/pages/1/audio")
            assert page.status_code == 200
            assert abs(decoded_seconds(page.content) - (sum(clips[2:5]) + 2 * 0.3)) <= 0.05

            # captions: one cue per line, in reading order, the speaker as the voice tag
            vtt = await svc.client.get(f"/v1/storybooks/{book['id']}/captions.vtt")
            assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
            cues = webvtt.from_buffer(io.StringIO(vtt.text)).captions
            assert len(cues) == 6
            assert [c.voice for c in cues] == [line["speaker"] for line in lines]
            assert "여우야" in cues[2].text
            starts = [c.start_in_seconds for c in cues]
            assert starts == sorted(starts)
            srt = await svc.client.get(f"/v1/storybooks/{book['id']}/captions.srt")
            assert srt.status_code == 200 and srt.text.count(" --> ") == 6

            chapters = (await svc.client.get(f"/v1/storybooks/{book['id']}/chapters")).json()
            assert [c["title"] for c in chapters["chapters"]] == ["Evening", "The hill", None]
            assert chapters["chapters"][1]["start_s"] > chapters["chapters"][0]["end_s"]


async def test_a_rejected_line_makes_the_book_partial_and_a_forced_retry_fixes_it(
    redis_url, store, tmp_path
):
    provider = FakeProvider()
    settings = make_settings(tmp_path)
    book = {
        "title": "Two lines",
        "cast": {"A": {"voice_id": "fake-en"}},
        "pages": [{"lines": [{"speaker": "A", "text": "first line"},
                             {"speaker": "A", "text": "second line"}]}],
    }
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            provider.script.append(ProviderRejected("the provider refused this text"))
            r = await svc.client.post("/v1/storybooks", json=book)
            assert r.status_code == 202, r.text
            done = await wait_book(svc, r.json()["id"])
            assert done["status"] == "partial", done
            failed = [line for line in lines_of(done) if line["status"] == "failed"]
            assert len(failed) == 1 and failed[0]["error"]["code"] == "provider_rejected"

            # partial outputs skip the failed line and say so
            audio = await svc.client.get(f"/v1/storybooks/{done['id']}/audio")
            assert audio.status_code == 200
            assert audio.headers["x-chorus-skipped-lines"] == failed[0]["id"]

            # a permanent error is not retried without force
            r = await svc.client.post(f"/v1/storybooks/{done['id']}/retry", json={})
            assert r.status_code == 422, r.text
            calls = provider.calls
            r = await svc.client.post(f"/v1/storybooks/{done['id']}/retry",
                                      json={"force": True})
            assert r.status_code == 202, r.text
            assert r.json()["round"] == 1 and r.json()["lines"] == [failed[0]["id"]]
            again = await wait_book(svc, done["id"])
            assert again["status"] == "succeeded", again
            assert provider.calls == calls + 1  # only the failed line was made again
            (round_,) = again["retry_rounds"]
            assert round_["round"] == 1 and round_["forced"] is True
            assert round_["succeeded"] == 1 and round_["failed"] == 0 and round_["finished_at"]
            fixed = next(line for line in lines_of(again) if line["id"] == failed[0]["id"])
            assert fixed["attempts"] == 2 and fixed["round"] == 1


async def test_identical_lines_are_made_once(redis_url, store, tmp_path):
    provider = FakeProvider()
    settings = make_settings(tmp_path)
    line = {"text": "Good night, moon.", "voice_id": "fake-en"}
    book = {"title": "Echo", "pages": [{"lines": [line, line]}, {"lines": [line]}]}
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json=book)
            done = await wait_book(svc, r.json()["id"])
            assert done["status"] == "succeeded"
            assert provider.calls == 1
            assert len({line["audio_id"] for line in lines_of(done)}) == 1


async def test_bad_books_are_refused_naming_the_page_and_line(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider()
        ) as svc:
            cases = [
                ({"title": "t", "pages": [{"lines": [{"text": "hi", "speaker": "Owl"}]}]},
                 422, "unknown_speaker", "pages[0].lines[0]"),
                ({"title": "t", "pages": [{"lines": [{"text": "ok"}, {"text": "  "}]}]},
                 422, "text_empty", "pages[0].lines[1]"),
                ({"title": "t", "pages": [{"lines": [{"text": "ok"}]},
                                          {"lines": [{"text": "x", "voice_id": "nope"}]}]},
                 404, "voice_not_found", "pages[1].lines[0]"),
                ({"title": "t", "pages": []}, 422, "invalid_input", "pages"),
                ({"title": "t", "pages": [{"lines": [{"text": "a"}]}], "colour": 1},
                 422, "unknown_field", "colour"),
            ]
            for body, status, code, where in cases:
                r = await svc.client.post("/v1/storybooks", json=body)
                assert r.status_code == status, (body, r.text)
                assert r.json()["code"] == code and where in r.json()["detail"], r.text
            listed = (await svc.client.get("/v1/storybooks")).json()
            assert listed["storybooks"] == []  # nothing half-accepted


async def test_a_book_over_the_quota_is_refused_whole(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider()
        ) as svc:
            user = await store.authenticate(svc.api_key)
            await store.set_quota(user.name, 30)
            book = {"title": "t", "pages": [{"lines": [{"text": "x" * 20}, {"text": "y" * 20}]}]}
            r = await svc.client.post("/v1/storybooks", json=book)
            assert r.status_code == 429 and r.json()["code"] == "quota_exceeded", r.text
            assert r.json()["required"] == 40
            assert (await svc.client.get("/v1/storybooks")).json()["storybooks"] == []
            usage = (await svc.client.get("/v1/usage")).json()
            assert usage["used"] == 0 and usage["reserved"] == 0


async def test_cancel_stops_generation_and_charges_only_what_ran(redis_url, store, tmp_path):
    provider = FakeProvider()
    provider.gate = trio.Event()  # every call waits until the test lets it go
    settings = make_settings(tmp_path, storybook_window=2, provider_concurrency=2)
    lines = [{"text": f"line number {i}", "voice_id": "fake-en"} for i in range(10)]
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json={"title": "t",
                                                              "pages": [{"lines": lines}]})
            book_id = r.json()["id"]
            for _ in range(1000):  # both slots busy with the book's first two lines
                if provider.active == 2:
                    break
                await trio.sleep(0.01)
            assert provider.active == 2
            r = await svc.client.delete(f"/v1/storybooks/{book_id}")
            assert r.status_code == 202, r.text
            provider.gate.set()
            done = await wait_book(svc, book_id)
            assert done["status"] == "cancelled"
            counts = done["counts"]
            assert counts["succeeded"] == 2 and counts["cancelled"] == 8, counts
            assert provider.calls == 2
            usage = (await svc.client.get("/v1/usage")).json()
            ran = sum(len(line["text"]) for line in lines[:2])
            assert usage["used"] == ran and usage["reserved"] == 0
            r = await svc.client.delete(f"/v1/storybooks/{book_id}")
            assert r.status_code == 409


async def test_lines_released_together_are_spoken_in_reading_order(redis_url, store, tmp_path):
    """The runner submits a window's lines at once; they still reach the stream, and so the
    provider, in reading order (one slot: the order shows)."""
    provider = FakeProvider()
    settings = make_settings(tmp_path, concurrency=1, provider_concurrency=1,
                             storybook_window=8)
    texts = [f"Line {i} of the page." for i in range(8)]
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json={
                "title": "t", "pages": [{"lines": [{"text": t, "voice_id": "fake-en"}
                                                   for t in texts]}],
            })
            done = await wait_book(svc, r.json()["id"])
            assert done["status"] == "succeeded"
            assert [req.text for req in provider.requests] == texts


async def test_lines_queued_when_their_book_is_cancelled_are_never_generated(
    redis_url, store, tmp_path
):
    """A line of a live book may be sent to the provider before its start is known; a cancel
    marks the book in Redis before Postgres, so lines still waiting in the batch lane when the
    book is cancelled wait for their start, which says "cancelled": no provider call."""
    provider = FakeProvider()
    provider.gate = trio.Event()  # every call waits until the test lets it go
    settings = make_settings(tmp_path, concurrency=2, provider_concurrency=2,
                             storybook_window=4)
    lines = [{"text": f"line number {i}", "voice_id": "fake-en"} for i in range(6)]
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json={"title": "t",
                                                              "pages": [{"lines": lines}]})
            book_id = r.json()["id"]
            while True:  # two lines at the provider, two more waiting in the batch lane
                counts = (await svc.client.get(f"/v1/storybooks/{book_id}")).json()["counts"]
                if provider.active == 2 and counts["queued"] + counts["running"] == 4:
                    break
                await trio.sleep(0.01)
            r = await svc.client.delete(f"/v1/storybooks/{book_id}")
            assert r.status_code == 202, r.text
            provider.gate.set()
            done = await wait_book(svc, book_id)
            assert done["status"] == "cancelled"
            assert done["counts"]["succeeded"] == 2 and done["counts"]["cancelled"] == 4
            assert [req.text for req in provider.requests] == ["line number 0", "line number 1"]
            usage = (await svc.client.get("/v1/usage")).json()
            assert usage["used"] == sum(len(line["text"]) for line in lines[:2])


async def test_another_users_book_is_not_found_on_every_route(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider()
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json={
                "title": "mine", "pages": [{"lines": [{"text": "secret line"}]}]})
            book_id = r.json()["id"]
            await wait_book(svc, book_id)
            _, other = await store.create_user("mallory")
            headers = {"Authorization": f"Bearer {other}"}
            base = f"/v1/storybooks/{book_id}"
            for method, path in [
                ("GET", base), ("DELETE", base), ("POST", f"{base}/retry"),
                ("GET", f"{base}/audio"), ("GET", f"{base}/pages/0/audio"),
                ("GET", f"{base}/captions.vtt"), ("GET", f"{base}/captions.srt"),
                ("GET", f"{base}/chapters"), ("GET", f"{base}/events"),
            ]:
                kwargs: dict[str, Any] = {"headers": headers}
                if method == "POST":
                    kwargs["json"] = {}
                r = await svc.client.request(method, path, **kwargs)
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                assert "secret" not in r.text
            listed = (await svc.client.get("/v1/storybooks", headers=headers)).json()
            assert listed["storybooks"] == []


async def test_a_retry_round_must_fit_the_quota(redis_url, store, tmp_path):
    provider = FakeProvider()
    settings = make_settings(tmp_path)
    book = {"title": "q", "pages": [{"lines": [{"text": "a" * 10, "voice_id": "fake-en"},
                                               {"text": "b" * 10, "voice_id": "fake-en"}]}]}
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            user = await store.authenticate(svc.api_key)
            await store.set_quota(user.name, 30)
            provider.script.append(ProviderRejected("no"))
            r = await svc.client.post("/v1/storybooks", json=book)
            done = await wait_book(svc, r.json()["id"])
            assert done["status"] == "partial"
            # 10 used; a job of 15 now holds its reservation: the failed line's 10 do not fit
            provider.gate = trio.Event()
            r = await svc.submit("c" * 15, voice_id="fake-en")
            assert r.status_code == 202
            r = await svc.client.post(f"/v1/storybooks/{done['id']}/retry", json={"force": True})
            assert r.status_code == 429 and r.json()["required"] == 10, r.text
            again = (await svc.client.get(f"/v1/storybooks/{done['id']}")).json()
            assert again["status"] == "partial" and again["retry_rounds"] == []
            provider.gate.set()
            await svc.wait_done(svc.accepted)


async def test_a_books_event_stream_follows_it_to_the_end(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    book = {"title": "ev", "pages": [{"lines": [{"text": f"line {i}", "voice_id": "fake-en"}
                                                for i in range(4)]}]}
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider(0.05)
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json=book)
            book_id = r.json()["id"]
            kinds: list[str] = []
            succeeded_lines: set[str] = set()
            async with svc.client.stream("GET", f"/v1/storybooks/{book_id}/events") as stream:
                assert stream.status_code == 200
                async for event in iter_sse(stream.aiter_lines()):
                    kinds.append(event.event)
                    assert event.data["subject"] == book_id
                    if event.event == "storybook.line.succeeded":
                        succeeded_lines.add(event.data["data"]["line_id"])
            assert kinds[-1] == "storybook.succeeded", kinds  # the stream ended by itself
            final = (await svc.client.get(f"/v1/storybooks/{book_id}")).json()
            ids = {line["id"] for line in lines_of(final)}
            # a late client may have missed some line events, never the end; here it was early
            assert succeeded_lines <= ids and len(succeeded_lines) >= 1


async def test_a_long_book_fits_in_one_request(redis_url, store, tmp_path):
    """A book's body is far larger than a job's (the JSON limit is sized per route)."""
    settings = make_settings(tmp_path, storybook_max_lines=600)
    text = "The little fox looked up at the moon and wondered how far away it was. " * 2
    book = {"title": "long", "pages": [
        {"lines": [{"text": f"{i} {text}", "voice_id": "fake-en"} for i in range(100)]}
        for _ in range(5)
    ]}
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider()
        ) as svc:
            r = await svc.client.post("/v1/storybooks", json=book)
            assert r.status_code == 202, r.text[:300]
            assert r.json()["lines_total"] == 500 and r.json()["characters"] > 70_000
            r = await svc.client.delete(f"/v1/storybooks/{r.json()['id']}")
            assert r.status_code == 202

"""``run.py story`` against a real Service (HTTP on 127.0.0.1, the embedded Valkey and Postgres,
the fake provider): the command's own entry point (``web.story_client.story``) with arguments
parsed by ``run.py``'s parser, as a user would run it; what it writes is read back as files."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import av
import trio
import webvtt

from protocols.errors import ProviderRejected
from protocols.providers.fake import FakeProvider
from run import build_parser
from tests.conftest import free_port
from tests.support.harness import Running, make_settings, running_service
from web.story_client import idempotency_key, story
from web.story_progress import Progress, bar, format_eta

CAP_S = 90

BOOK: dict[str, Any] = {
    "title": "Two pages",
    "cast": {"Narrator": {"voice_id": "fake-en"}, "Owl": {"voice_id": "fake-ko"}},
    "pages": [
        {"title": "Night", "lines": [
            {"speaker": "Narrator", "text": "The owl woke up at night."},
            {"speaker": "Owl", "text": "Who is there?"},
        ]},
        {"title": "Morning", "lines": [
            {"speaker": "Narrator", "text": "Then the sun came up."},
        ]},
    ],
    "pause_ms": {"line": 300, "page": 900},
}
OUTPUTS = {"book.json", "book.mp3", "page-0.mp3", "page-1.mp3", "captions.vtt", "captions.srt",
           "chapters.json"}


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


def args(svc: Running, *argv: str) -> argparse.Namespace:
    return build_parser().parse_args(
        ["story", *argv, "--url", svc.service.http_binds[0], "--key", svc.api_key]
    )


def write_book(path: Path, book: dict[str, Any], **dump: Any) -> str:
    path.write_text(json.dumps(book, **dump))
    return str(path)


def settings_for(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, storybook_progress_s=0.05, **overrides)


async def books_of(svc: Running) -> list[str]:
    return [b["id"] for b in (await svc.client.get("/v1/storybooks")).json()["storybooks"]]


async def test_a_book_file_is_submitted_followed_and_written_out_and_resume_writes_it_again(
    redis_url, store, tmp_path, capsys
):
    provider = FakeProvider()
    settings = settings_for(tmp_path)
    file = write_book(tmp_path / "owl.json", BOOK)
    out = tmp_path / "out"
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            assert await story(args(svc, file, "-o", str(out)), settings) == 0
            captured = capsys.readouterr()
            assert captured.out.strip() == str(out)  # stdout: where the files are
            assert "3/3 done, 0 failed" in captured.err  # the progress, as plain lines
            assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)

            view = json.loads((out / "book.json").read_text())
            assert view["status"] == "succeeded" and view["counts"]["succeeded"] == 3
            lines = [line for page in view["pages"] for line in page["lines"]]
            clips = []
            for line in lines:
                audio = await svc.client.get(f"/v1/audio/{line['audio_id']}")
                clips.append(decoded_seconds(audio.content))
            whole = decoded_seconds((out / "book.mp3").read_bytes())
            assert abs(whole - (sum(clips) + 0.3 + 0.9)) <= 0.05
            assert abs(decoded_seconds((out / "page-0.mp3").read_bytes())
                       - (clips[0] + 0.3 + clips[1])) <= 0.05
            assert abs(decoded_seconds((out / "page-1.mp3").read_bytes()) - clips[2]) <= 0.05

            cues = webvtt.read(str(out / "captions.vtt")).captions
            assert [c.voice for c in cues] == ["Narrator", "Owl", "Narrator"]
            assert (out / "captions.srt").read_text().count(" --> ") == 3
            chapters = json.loads((out / "chapters.json").read_text())
            assert [c["title"] for c in chapters["chapters"]] == ["Night", "Morning"]
            assert abs(chapters["chapters"][-1]["end_s"] - whole) <= 0.05

            # --resume: the same book's files again, nothing submitted or generated
            calls = provider.calls
            again = tmp_path / "again"
            assert await story(args(svc, "--resume", view["id"], "-o", str(again)), settings) == 0
            assert sorted(p.name for p in again.iterdir()) == sorted(OUTPUTS)
            assert (again / "book.mp3").read_bytes() == (out / "book.mp3").read_bytes()
            assert await books_of(svc) == [view["id"]] and provider.calls == calls


async def test_the_same_book_twice_is_one_book(redis_url, store, tmp_path, capsys, monkeypatch):
    provider = FakeProvider()
    settings = settings_for(tmp_path)
    file = write_book(tmp_path / "owl.json", BOOK)
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            assert await story(args(svc, file, "-o", str(tmp_path / "a")), settings) == 0
            first = json.loads((tmp_path / "a" / "book.json").read_text())
            calls = provider.calls

            # the same content again (from stdin, spaced and ordered differently): same book
            shuffled = json.dumps(dict(reversed(BOOK.items())), indent=4)
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(shuffled.encode())))
            assert await story(args(svc, "-", "-o", str(tmp_path / "b")), settings) == 0
            second = json.loads((tmp_path / "b" / "book.json").read_text())
            assert second["id"] == first["id"] and provider.calls == calls
            assert "was submitted before" in capsys.readouterr().err

            # an edited book is a new one
            edited = {**BOOK, "title": "Two pages, again"}
            file2 = write_book(tmp_path / "edited.json", edited)
            assert idempotency_key(edited) != idempotency_key(BOOK)
            assert await story(args(svc, file2, "-o", str(tmp_path / "c")), settings) == 0
            third = json.loads((tmp_path / "c" / "book.json").read_text())
            assert third["id"] != first["id"]
            assert sorted(await books_of(svc)) == sorted([first["id"], third["id"]])


async def test_a_partial_book_exits_2_naming_the_failed_line_and_a_forced_retry_fixes_it(
    redis_url, store, tmp_path, capsys
):
    provider = FakeProvider()
    # one event stream per process, and the test holds it: the CLI has to poll
    settings = settings_for(tmp_path, sse_max_streams=1)
    file = write_book(tmp_path / "owl.json", BOOK)
    out = tmp_path / "out"
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc, svc.client.stream("GET", "/v1/events") as held:
            assert held.status_code == 200
            busy = await svc.client.get("/v1/storybooks/sb_x/events")
            assert busy.status_code == 503, busy.text
            provider.script.append(ProviderRejected("the provider refused this text"))
            assert await story(args(svc, file, "-o", str(out)), settings) == 2
            err = capsys.readouterr().err
            view = json.loads((out / "book.json").read_text())
            assert view["status"] == "partial"
            refused = [(page["index"], line) for page in view["pages"]
                       for line in page["lines"] if line["status"] == "failed"]
            assert len(refused) == 1
            page, line = refused[0]
            assert (f"failed: line {line['id']} (page {page}, line {line['index']}):"
                    f" provider_rejected: the provider refused this text") in err
            assert f"run.py story --retry {view['id']} --force" in err
            # what exists is written: the book without the refused line, its captions
            assert {"book.json", "book.mp3", "captions.vtt", "chapters.json"} <= {
                p.name for p in out.iterdir()
            }
            assert len(webvtt.read(str(out / "captions.vtt")).captions) == 2

            # a permanent error is not retried without --force: the problem, exit 1
            assert await story(args(svc, "--retry", view["id"], "-o", str(out)), settings) == 1
            assert "error: invalid_input: nothing to retry" in capsys.readouterr().err

            calls = provider.calls
            assert await story(
                args(svc, "--retry", view["id"], "--force", "--lines", line["id"],
                     "-o", str(out)), settings,
            ) == 0
            fixed = json.loads((out / "book.json").read_text())
            assert fixed["status"] == "succeeded" and provider.calls == calls + 1
            assert fixed["retry_rounds"][0]["lines"] == [line["id"]]
            assert len(webvtt.read(str(out / "captions.vtt")).captions) == 3
            assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)


async def test_a_bad_book_or_a_timeout_prints_the_problem_and_exits_1(
    redis_url, store, tmp_path, capsys
):
    provider = FakeProvider()
    settings = settings_for(tmp_path)
    bad = {"title": "t", "pages": [{"lines": [{"text": "hi"}, {"speaker": "Owl", "text": "x"}]}]}
    file = write_book(tmp_path / "bad.json", bad)
    out = tmp_path / "out"
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            assert await story(args(svc, file, "-o", str(out)), settings) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: unknown_speaker: ") and "pages[0].lines[1]" in err
            assert "Traceback" not in err
            assert not out.exists() and await books_of(svc) == []

            (tmp_path / "broken.json").write_text('{"title": ')
            assert await story(args(svc, str(tmp_path / "broken.json")), settings) == 1
            assert capsys.readouterr().err.startswith("error: malformed_json: ")

            assert await story(args(svc, "--resume", "bk_nope"), settings) == 1
            assert capsys.readouterr().err.startswith("error: not_found: ")

            # a book that does not end in time: exit 1, saying how to follow it again
            provider.gate = trio.Event()
            slow = write_book(tmp_path / "slow.json", BOOK)
            assert await story(args(svc, slow, "--timeout", "0.5"), settings) == 1
            (book_id,) = await books_of(svc)
            assert (f"error: timeout: gave up after 0.5 s; `run.py story --resume {book_id}`"
                    " follows it again") in capsys.readouterr().err
            provider.gate.set()


async def test_usage_mistakes_and_an_unreachable_server_exit_1(tmp_path, capsys):
    settings = make_settings(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"

    def parsed(*argv: str) -> argparse.Namespace:
        return build_parser().parse_args(["story", *argv, "--url", url, "--key", "k"])

    assert await story(parsed("--resume", "bk_1", "--force"), settings) == 1
    assert "error: usage: --force and --lines go with --retry ID" in capsys.readouterr().err
    assert await story(parsed("book.json", "--resume", "bk_1"), settings) == 1
    assert "error: usage: give one of FILE" in capsys.readouterr().err
    with trio.fail_after(10):  # a wrong --url fails at once (no waiting for a restart)
        assert await story(parsed("--resume", "bk_1"), settings) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: unreachable: cannot reach Chorus at {url}: ConnectError")


def test_the_bar_and_the_eta_on_a_terminal():
    now = [100.0]
    stream = io.StringIO()
    progress = Progress("bk_1", stream, tty=True, clock=lambda: now[0])
    progress.snapshot(status="running", total=10, counts={"succeeded": 0, "pending": 10})
    assert stream.getvalue().endswith(
        "\rstorybook bk_1 running [" + "." * 30 + "] 0/10 done, 0 failed, ETA --\x1b[K"
    )
    now[0] = 104.0
    progress.line_ended("ln_1", "succeeded")
    progress.line_ended("ln_1", "succeeded")  # one line, counted once
    now[0] = 108.0
    progress.line_ended("ln_2", "failed")
    # 2 lines in 8 s: 8 left take 32 s
    assert progress.text() == (
        "storybook bk_1 running [###xxx........................] 1/10 done, 1 failed, ETA 32s"
    )
    progress.snapshot(status="partial", total=10, counts={"succeeded": 9, "failed": 1})
    progress.close()
    assert stream.getvalue().endswith("9/10 done, 1 failed\x1b[K\n")
    assert bar(0, 0, 0, width=4) == "[....]"
    assert [format_eta(s) for s in (None, 5.4, 65, 7380)] == ["--", "5s", "1m05s", "2h03m"]


def test_plain_lines_when_stderr_is_not_a_terminal():
    stream = io.StringIO()
    progress = Progress("bk_1", stream, tty=False, clock=lambda: 0.0)
    progress.snapshot(status="running", total=2, counts={"pending": 2})
    progress.snapshot(status="running", total=2, counts={"pending": 2})  # no change: no line
    progress.line_ended("ln_1", "succeeded")
    progress.snapshot(status="succeeded", total=2, counts={"succeeded": 2})
    assert stream.getvalue().splitlines() == [
        "storybook bk_1 running 0/2 done, 0 failed, ETA --",
        "storybook bk_1 running 1/2 done, 0 failed, ETA --",
        "storybook bk_1 succeeded 2/2 done, 0 failed",
    ]

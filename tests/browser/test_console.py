"""The web console in real headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright's sync API) against a live Chorus: a real ``run.py serve`` process on the session's
Valkey and a test's Postgres, speaking through the real ElevenLabs adapter to the stand-in
ElevenLabs server (in a thread of this process, where the test injects a provider error).

Playwright's API is sync/asyncio, not trio: each browser session runs in a worker thread
(``trio.to_thread.run_sync``) while trio keeps reading the process's output.

Screenshots of each page go to the test's temporary directory; with ``CHORUS_SCREENSHOTS_DIR``
set (``make screenshots``) they are written there instead (the README's are in
``docs/screenshots/``).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from protocols.processes import ProcessInfo
from protocols.providers.elevenlabs.stand_in.server import FakeElevenLabs
from protocols.redis.keys import Keys
from protocols.redis.processes import open_processes
from tests.support.procs import ChorusProcess, chorus_process, unique_prefix

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (apt-get install chromium; `make test` "
        "installs it where apt-get is available)",
    ),
]

ACCOUNT_KEY = "sk-console-browser"
FAR_WORKER = ProcessInfo(id="other-host:4242:f00d", role="worker", consumer="far-worker",
                         host="other-host", pid=4242, started_at=1_790_000_000.0)
LIMIT_S = 60
TIMEOUT_MS = 15_000
WAIT_AUDIO = """async () => {
  const a = document.getElementById("result-audio");
  if (a.readyState < 1) await new Promise((ok, fail) => {
    a.addEventListener("loadedmetadata", ok, { once: true });
    a.addEventListener("error", () => fail(new Error("audio: " + a.error?.message)),
                       { once: true });
  });
  await a.play();
  return { duration: a.duration, paused: a.paused, src: a.src };
}"""


def shots_dir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("CHORUS_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@asynccontextmanager
async def live_chorus(
    tmp_path: Path, redis_url: str, database_url: str, fake: FakeElevenLabs,
    extra: dict[str, str] | None = None, prefix: str | None = None,
) -> AsyncIterator[ChorusProcess]:
    env = {
        "CHORUS_PROVIDER": "",  # unset: ElevenLabs, because its key is set
        "ELEVENLABS_API_KEY": ACCOUNT_KEY,
        "ELEVENLABS_BASE_URL": fake.base_url,
        "ELEVENLABS_TIMEOUT_S": "10",
        **(extra or {}),
    }
    async with chorus_process(
        data_dir=tmp_path / "data", redis_url=redis_url, database_url=database_url,
        consumer="console-worker", prefix=prefix or unique_prefix(), env=env,
    ) as proc:
        yield proc


def in_browser_thread(session, *args):  # type: ignore[no-untyped-def]
    """Run ``session`` in a worker thread with a plain asyncio loop policy for that thread only
    (trio-asyncio's policy is per thread outside trio; Playwright needs a plain loop)."""

    def run():  # type: ignore[no-untyped-def]
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        return session(*args)

    return trio.to_thread.run_sync(run)


def open_browser(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
    )


def sign_in(page, base: str, key: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base + "/")
    page.fill("#api-key", key)
    page.click("#signin-form button")
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#live")).to_be_visible()  # the event stream is open
    assert key not in page.url


def user_session(base: str, key: str, fake: FakeElevenLabs, shots: Path) -> dict[str, object]:
    """Sign in, speak, hear it, see a failing job, the jobs, voices and storybooks pages."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(base + "/")
            expect(page.locator("#nav")).to_be_hidden()  # nothing but the sign-in form yet
            page.screenshot(path=str(shots / "signin.png"))
            page.fill("#api-key", "not-a-key")
            page.click("#signin-form button")
            expect(page.locator("#signin-error")).to_have_text("That API key is not valid.")
            sign_in(page, base, key)
            expect(page.locator("#nav-admin")).to_be_hidden()  # not an admin
            seen["stored"] = page.evaluate("sessionStorage.getItem('chorus.key')") == key
            page.evaluate("window.__sameDocument = true")

            # speak: the provider takes a moment, so the job is seen unfinished first
            fake.stall(0.8)
            page.fill("#text", "Hello from a real browser.")
            page.select_option("#voice", label="Sarah (en)")
            page.click("#speak-submit")
            expect(page.locator("#result .status")).to_have_text(re.compile("queued|running"))
            expect(page.locator("#result .status")).to_have_text("succeeded")
            seen["audio"] = page.evaluate(WAIT_AUDIO)
            page.screenshot(path=str(shots / "speak.png"))

            # a job the provider refuses: failed, with its error shown
            fake.inject(400, "invalid_request", message="The stand-in refuses this text")
            page.fill("#text", "Nobody will say this line.")
            page.click("#speak-submit")
            expect(page.locator("#result .status")).to_have_text("failed")
            seen["error"] = page.locator("#result .job-error").inner_text()

            page.click("nav a[data-page=jobs]")
            rows = page.locator("#jobs-body tr")
            expect(rows).to_have_count(2)  # listed by the server (GET /v1/jobs), newest first
            expect(page.locator("#jobs-note")).to_have_text("")
            expect(rows.nth(0).locator(".status")).to_have_text("failed")
            expect(rows.nth(0).locator(".job-error")).to_contain_text("refuses this text")
            expect(rows.nth(1).locator(".status")).to_have_text("succeeded")
            expect(rows.nth(1)).to_contain_text("EXAVITQu4vr4xnSDxMaL")  # Sarah, as picked
            rows.nth(1).get_by_role("button", name="Play").click()
            expect(rows.nth(1).locator("audio")).to_have_count(1)
            page.screenshot(path=str(shots / "jobs.png"))

            page.click("nav a[data-page=voices]")
            expect(page.locator(".voice").first).to_be_visible()
            seen["voices"] = page.locator(".voice").count()
            seen["ready"] = page.locator(".voice .status.completed").count()
            page.screenshot(path=str(shots / "voices.png"))

            # a storybook submitted elsewhere shows up and finishes live on its page
            page.click("nav a[data-page=storybooks]")
            expect(page.locator("#books-note")).to_have_text("No storybooks yet.")
            book = {"title": "The Fox and the Crow", "pages": [{"lines": [
                {"text": "A crow sat in a tree with a piece of cheese."},
                {"text": "A fox came by and looked up."},
            ]}]}
            r = httpx.post(f"{base}/v1/storybooks", json=book, timeout=10,
                           headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 202, r.text
            expect(page.locator("#books-body tr .status")).to_have_text("succeeded")
            page.screenshot(path=str(shots / "storybooks.png"))

            seen["same_document"] = page.evaluate("window.__sameDocument === true")
            seen["errors"] = errors
        finally:
            browser.close()
    return seen


def admin_session(base: str, key: str, dead_job: str, shots: Path) -> dict[str, object]:
    """An admin sees the queue panel (lanes, consumers, slots, cache hit rate, restarts) and
    redrives a dead letter with its button."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            sign_in(page, base, key)
            expect(page.locator("#nav-admin")).to_be_visible()
            page.click("#nav-admin")
            expect(page.locator("#lanes-body tr")).to_have_count(2)
            expect(page.locator("#consumers-body")).to_contain_text("console-worker")
            stats = page.locator("#admin-stats")
            expect(stats).to_contain_text("Cache hit rate")
            expect(stats).to_contain_text("Provider slots in use")
            expect(page.locator("#children-body")).to_contain_text("tts-0")
            # every process of the deployment: this serve process and a worker elsewhere
            expect(page.locator("#processes-body tr")).to_have_count(2)
            expect(page.locator('#processes-body tr[data-role="serve"]')).to_contain_text(
                "serve (this)")
            worker = page.locator('#processes-body tr[data-role="worker"]')
            expect(worker).to_contain_text("far-worker")
            expect(worker).to_contain_text("other-host")
            expect(worker).to_contain_text("3 · stream-reader ×1 · tts-1 ×2")
            expect(stats).to_contain_text("2 processes")
            dead = page.locator("#dead-body tr")
            expect(dead).to_have_count(1)
            expect(dead).to_contain_text(dead_job)
            expect(dead).to_contain_text("service_unavailable")
            seen: dict[str, object] = {"stats": stats.inner_text()}
            page.screenshot(path=str(shots / "admin.png"), full_page=True)
            dead.get_by_role("button", name="Redrive").click()
            expect(dead).to_have_count(0)
            expect(page.locator("#dead-note")).to_have_text("No dead letters.")
            return seen
        finally:
            browser.close()


async def wait_status(http: httpx.AsyncClient, job_id: str, status: str) -> None:
    """Follow the job's own event stream (it ends after the job's terminal event)."""
    last = None
    with trio.fail_after(20):
        async with http.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            async for line in r.aiter_lines():
                if line.startswith("event: job."):
                    last = line.removeprefix("event: job.")
    assert last == status, f"job {job_id} ended {last}, not {status}"


async def test_the_console_for_a_user_then_an_admin(redis_url, database_url, store, tmp_path):
    """One live Chorus for both sessions (a process start costs seconds): a user speaks, hears
    the result and sees a refused job fail, live; then an admin sees the queue and redrives a
    dead letter. One delivery per job and one provider try per delivery, so a provider outage
    dead-letters a job at once."""
    shots = shots_dir(tmp_path)
    env = {"CHORUS_MAX_DELIVERIES": "1", "CHORUS_PROVIDER_MAX_ATTEMPTS": "1"}
    prefix = unique_prefix()
    with FakeElevenLabs(api_key=ACCOUNT_KEY) as fake, trio.fail_after(LIMIT_S):
        _, key = await store.create_user("browser-user")
        _, admin_key = await store.create_user("ops", admin=True)
        async with live_chorus(tmp_path, redis_url, database_url, fake, env, prefix) as proc:
            base = f"http://127.0.0.1:{proc.port}"
            seen = await in_browser_thread(user_session, base, key, fake, shots)

            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
            ) as http:
                job = (await http.post("/v1/jobs", json={"text": "Said once."})).json()
                await wait_status(http, job["id"], "succeeded")
                again = await http.post("/v1/jobs", json={"text": "Said once."})
                assert again.json()["cached"] is True
                # a provider outage on its one delivery: released once, then dead-lettered
                fake.inject(503, "service_unavailable")
                dead = (await http.post("/v1/jobs", json={"text": "Dies first."})).json()
                await wait_status(http, dead["id"], "dead")
                cache = (await http.get("/v1/admin/overview")).json()["cache"]
                # a worker on another host, as its reporter beats into the shared list
                async with open_processes(redis_url, Keys(prefix), stream_timeout=5) as procs:
                    await procs.beat(FAR_WORKER, {"tts-pool/tts-1": 2, "root/stream-reader": 1},
                                     LIMIT_S)

                ops = await in_browser_thread(admin_session, base, admin_key, dead["id"], shots)
                await wait_status(http, dead["id"], "succeeded")  # the redrive took
            assert key not in proc.output and admin_key not in proc.output  # never logged

    assert seen["stored"] is True
    audio = seen["audio"]
    assert isinstance(audio, dict) and audio["duration"] > 0 and audio["paused"] is False
    # fetched with the key into a blob: URL, or a signed audio_url of this server played as is
    assert str(audio["src"]).startswith(("blob:", "http://127.0.0.1:"))
    assert "provider_rejected" in str(seen["error"])
    assert "refuses this text" in str(seen["error"])
    assert seen["voices"] and seen["ready"] == seen["voices"]
    assert seen["same_document"] is True  # everything above happened without a reload
    assert seen["errors"] == []

    assert cache["cached"] == 1  # the one repeat
    assert f"{cache['cached']} of {cache['jobs']} jobs" in str(ops["stats"])

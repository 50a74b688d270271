"""The console's static files and the admin queue routes' edges (auth, 403, 404, 503) on
in-memory fakes; the figures themselves are tested on a live service
(tests/integration/test_admin_queue.py) and in a browser (tests/browser/)."""

from __future__ import annotations

from typing import Any

import trio

from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import FakeBlobStore, FakeJobStore
from web.app import create_app
from web.context import WebContext


async def _ready() -> dict[str, bool]:
    return {}


async def app_with(**parts: Any) -> tuple[Any, dict[str, str], dict[str, str]]:
    """A test client, an admin's and a user's auth headers."""
    store = FakeJobStore()
    _, admin = await store.create_user("ops", admin=True)
    _, user = await store.create_user("alice")
    ctx = WebContext(settings=Settings(), store=store, blobs=FakeBlobStore(),
                     provider=FakeProvider(), intake=None, readiness=_ready,  # type: ignore[arg-type]
                     **parts)
    client = create_app(ctx).test_client()
    return client, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {user}"}


async def test_the_console_page_and_its_files_need_no_key_and_keep_a_strict_policy():
    with trio.fail_after(10):
        client, _, _ = await app_with()
        page = await client.get("/")
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = await page.get_data(as_text=True)
        assert '<script src="/console/app.js" defer></script>' in html
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        again = await client.get("/", headers={"If-None-Match": page.headers["ETag"]})
        assert again.status_code == 304 and await again.get_data() == b""

        script = await client.get("/console/app.js")
        assert script.status_code == 200 and script.mimetype == "text/javascript"
        assert "sessionStorage" in await script.get_data(as_text=True)
        assert (await client.get("/console/app.css")).mimetype == "text/css"
        for missing in ("/console/index.html", "/console/nope.js", "/console/..%2Frun.py"):
            response = await client.get(missing)
            assert response.status_code == 404, missing
            assert (await response.get_json(force=True))["code"] == "not_found"


async def test_admin_routes_answer_admins_only():
    redriven: list[str] = []

    async def overview() -> dict[str, int]:
        return {"dead_letters": 0}

    async def redrive(letter_id: str) -> list[str]:
        redriven.append(letter_id)
        return ["job_1"] if letter_id == "1-0" else []

    with trio.fail_after(10):
        client, admin, user = await app_with(overview=overview, redrive=redrive)  # type: ignore[arg-type]
        assert (await client.get("/v1/admin/overview")).status_code == 401
        denied = await client.get("/v1/admin/overview", headers=user)
        assert denied.status_code == 403
        assert (await denied.get_json(force=True))["code"] == "forbidden"
        denied = await client.post("/v1/admin/dead-letters/1-0/redrive", headers=user)
        assert denied.status_code == 403 and redriven == []  # nothing was redriven

        ok = await client.get("/v1/admin/overview", headers=admin)
        assert ok.status_code == 200 and await ok.get_json() == {"dead_letters": 0}
        done = await client.post("/v1/admin/dead-letters/1-0/redrive", headers=admin)
        assert done.status_code == 200 and await done.get_json() == {"redriven": ["job_1"]}
        gone = await client.post("/v1/admin/dead-letters/2-0/redrive", headers=admin)
        assert gone.status_code == 404
        bad = await client.post("/v1/admin/dead-letters/a%20b/redrive", headers=admin)
        assert bad.status_code == 422
        assert redriven == ["1-0", "2-0"]


async def test_admin_routes_without_a_queue_answer_503():
    with trio.fail_after(10):
        client, admin, _ = await app_with()
        response = await client.get("/v1/admin/overview", headers=admin)
        assert response.status_code == 503
        response = await client.post("/v1/admin/dead-letters/1-0/redrive", headers=admin)
        assert response.status_code == 503

"""CORS on a live Chorus (``CHORUS_CORS_ORIGINS``): preflights answered, allowed origins get
the headers on every answer (problems and audio too), other origins get none."""

from __future__ import annotations

import httpx
import trio

from tests.support.harness import make_settings, running_service

CAP_S = 60
APP = "https://app.example"


async def test_cors_for_allowed_origins_only(redis_url, store, tmp_path) -> None:
    settings = make_settings(tmp_path, cors_origins=(APP, "http://localhost:5173"))
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            async with httpx.AsyncClient(base_url=str(svc.client.base_url)) as browser:
                r = await browser.options("/v1/jobs", headers={
                    "Origin": APP, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, x-custom",
                })
                assert r.status_code == 200, r.text
                assert r.headers["access-control-allow-origin"] == APP
                assert "POST" in r.headers["access-control-allow-methods"]
                allowed = r.headers["access-control-allow-headers"].lower()
                assert {"authorization", "content-type", "x-custom"} <= {
                    h.strip() for h in allowed.split(",")}
                assert int(r.headers["access-control-max-age"]) > 0
                assert "access-control-allow-credentials" not in r.headers
                # a real request: the job's Location can be read by the page's script
                r = await svc.client.post("/v1/jobs", json={"text": "From a browser."},
                                          headers={"Origin": APP})
                assert r.status_code == 202
                assert r.headers["access-control-allow-origin"] == APP
                assert "location" in r.headers["access-control-expose-headers"].lower()
                assert "Origin" in r.headers["vary"]
                job = (await svc.wait_done([r.json()["id"]]))[r.json()["id"]]
                # a problem, and the signed audio a page's <audio> plays, carry it too
                r = await browser.get("/v1/jobs", headers={"Origin": APP})
                assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP
                r = await browser.get(job["audio_url"], headers={"Origin": APP})
                assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
                # another origin: no CORS headers (the browser then refuses the answer)
                r = await browser.options("/v1/jobs", headers={
                    "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
                assert "access-control-allow-origin" not in r.headers
                r = await svc.client.get("/v1/jobs", headers={"Origin": "https://evil.example"})
                assert "access-control-allow-origin" not in r.headers

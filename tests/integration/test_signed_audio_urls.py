"""Signed audio URLs on a live Chorus (real Valkey and Postgres): a finished job's
``audio_url`` plays without an API key until it expires; tampered, expired or borrowed
signatures are typed 403 / 401; the key is the one kept in Postgres (the same on every host)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import trio

from tests.support.harness import make_settings, running_service
from web.signing import SECRET_NAME, AudioSigner

CAP_S = 60


async def test_a_signed_audio_url_works_without_a_key_until_it_expires(
    redis_url, store, tmp_path
) -> None:
    settings = make_settings(tmp_path, audio_url_ttl_s=600.0)
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            job_id = (await svc.submit("A clip for the browser.")).json()["id"]
            job = (await svc.wait_done([job_id]))[job_id]
            url = job["audio_url"]
            query = parse_qs(urlsplit(url).query)
            assert url.startswith(f"/v1/audio/{job['audio_id']}?")
            assert 0 < int(query["expires"][0]) - time.time() <= 600 + 60
            keyed = await svc.client.get(f"/v1/audio/{job['audio_id']}")
            async with httpx.AsyncClient(base_url=str(svc.client.base_url)) as anonymous:
                r = await anonymous.get(url)
                assert r.status_code == 200 and r.content == keyed.content
                assert r.headers["content-type"] == keyed.headers["content-type"]
                # no key and no signature: 401 as before
                r = await anonymous.get(f"/v1/audio/{job['audio_id']}")
                assert r.status_code == 401
                # tampered: another expiry, another signature, half a signature
                expires, sig = query["expires"][0], query["sig"][0]
                for params in ({"expires": int(expires) + 1, "sig": sig},
                               {"expires": expires, "sig": sig[:-1] + ("0" if sig[-1] != "0"
                                                                       else "1")},
                               {"expires": expires}, {"expires": "soon", "sig": sig}):
                    r = await anonymous.get(f"/v1/audio/{job['audio_id']}", params=params)
                    assert r.status_code == 403, params
                    assert r.json()["code"] == "invalid_signature"
                # expired: signed with the server's own key (made once, kept in Postgres)
                key = await store.server_secret(SECRET_NAME)
                past = AudioSigner(key, 600.0, clock=lambda: time.time() - 3600)
                r = await anonymous.get(past.url(job["audio_id"], (await store.get_job(
                    job_id)).owner))
                assert r.status_code == 401 and r.json()["code"] == "url_expired"
                # another user's signature does not open this user's audio
                _, bob_key = await store.create_user("bob")
                bob_h = {"Authorization": f"Bearer {bob_key}"}
                bob_job = (await svc.client.post("/v1/jobs", headers=bob_h,
                                                 json={"text": "Bob's own clip."})).json()
                bob_job = (await svc.wait_done([bob_job["id"]], headers=bob_h))[bob_job["id"]]
                bob_query = urlsplit(bob_job["audio_url"]).query
                r = await anonymous.get(f"/v1/audio/{job['audio_id']}?{bob_query}")
                assert r.status_code == 403
                r = await anonymous.get(f"/v1/audio/aud_nope?{urlsplit(url).query}")
                assert r.status_code == 403  # tells nothing about which ids exist
                # the keyed route still hides another user's audio (404)
                r = await svc.client.get(f"/v1/audio/{bob_job['audio_id']}")
                assert r.status_code == 404

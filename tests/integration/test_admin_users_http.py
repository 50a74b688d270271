"""Admin routes for users, API keys and quotas on a live Chorus (real Valkey and Postgres):
admins only, keys shown once and never logged, a revoked or rotated key refused at once."""

from __future__ import annotations

import logging

import trio

from tests.support.harness import make_settings, running_service

CAP_S = 60


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_admin_manages_users_keys_and_quotas(redis_url, store, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path)
    with trio.fail_after(CAP_S):
        _, root_key = await store.create_user("root", admin=True)
        root = bearer(root_key)
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            http = svc.client
            # a plain user is refused every admin route (403), no key at all is 401
            for method, path in [("GET", "/v1/admin/users"), ("POST", "/v1/admin/users"),
                                 ("DELETE", "/v1/admin/keys/key_x"),
                                 ("PUT", "/v1/admin/users/u/quota")]:
                r = await http.request(method, path, json={})
                assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
                r = await http.request(method, path, headers={"Authorization": ""})
                assert r.status_code == 401, path

            r = await http.post("/v1/admin/users", headers=root,
                                json={"name": "carol", "monthly_quota": 500})
            assert r.status_code == 201, r.text
            assert r.headers["cache-control"] == "no-store"
            carol, first = r.json()["user"], r.json()["api_key"]
            assert (carol["role"], carol["monthly_quota"]) == ("user", 500)
            assert first["key"].startswith("chk_") and first["revoked_at"] is None
            carol_key = first["key"]
            r = await http.get("/v1/usage", headers=bearer(carol_key))
            assert r.status_code == 200 and r.json()["limit"] == 500
            names = [u["name"] for u in (await http.get("/v1/admin/users", headers=root))
                     .json()["users"]]
            assert {"root", "carol"} <= set(names)
            for body, code in [({"name": "carol"}, "already_exists"),
                               ({"name": ""}, "invalid_input"),
                               ({"name": "dave", "role": "boss"}, "invalid_input"),
                               ({"name": "dave", "shoe": 1}, "unknown_field"),
                               ({"name": "dave", "monthly_quota": -1}, "invalid_input")]:
                r = await http.post("/v1/admin/users", headers=root, json=body)
                assert r.json()["code"] == code, (body, r.text)

            # a second key, then a rotation: the rotated key is refused at once
            r = await http.post(f"/v1/admin/users/{carol['id']}/keys", headers=root,
                                json={"label": "ci"})
            assert r.status_code == 201 and r.json()["label"] == "ci"
            second_id, second = r.json()["id"], r.json()["key"]
            assert (await http.get("/v1/usage", headers=bearer(second))).status_code == 200
            r = await http.post(f"/v1/admin/keys/{second_id}/rotate", headers=root)
            assert r.status_code == 201, r.text
            assert r.json()["revoked"]["revoked_at"] is not None
            third = r.json()["api_key"]["key"]
            assert (await http.get("/v1/usage", headers=bearer(second))).status_code == 401
            assert (await http.get("/v1/usage", headers=bearer(third))).status_code == 200
            r = await http.post(f"/v1/admin/keys/{second_id}/rotate", headers=root)
            assert r.status_code == 404
            # revoke the first key: refused at once (it was just in the auth cache)
            r = await http.delete(f"/v1/admin/keys/{first['id']}", headers=root)
            assert r.status_code == 200 and r.json()["revoked_at"] is not None
            r = await http.get("/v1/usage", headers=bearer(carol_key))
            assert r.status_code == 401
            r = await http.get(f"/v1/admin/users/{carol['id']}", headers=root)
            keys = r.json()["api_keys"]
            assert [k["revoked_at"] is None for k in keys] == [False, False, True]
            assert all("key" not in k for k in keys)
            assert (await http.get("/v1/admin/users/nobody", headers=root)).status_code == 404

            # quotas: set, shown at once to the user; cleared
            r = await http.put(f"/v1/admin/users/{carol['id']}/quota", headers=root,
                               json={"monthly_quota": 42})
            assert r.status_code == 200 and r.json()["monthly_quota"] == 42
            assert (await http.get("/v1/usage", headers=bearer(third))).json()["limit"] == 42
            r = await http.put(f"/v1/admin/users/{carol['id']}/quota", headers=root,
                               json={"monthly_quota": "lots"})
            assert r.status_code == 422
            r = await http.delete(f"/v1/admin/users/{carol['id']}/quota", headers=root)
            assert r.status_code == 200 and r.json()["monthly_quota"] is None
            assert (await http.get("/v1/usage", headers=bearer(third))).json()["limit"] is None
    logged = caplog.text
    for key in (carol_key, second, third):
        assert key not in logged

"""Pronunciation dictionaries end to end: a real Service (HTTP on 127.0.0.1, the embedded Valkey
and Postgres) with the embedded espeak-ng engine, or ElevenLabs on the fake ElevenLabs server
(which records the locators of every text-to-speech call)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from protocols.dictionaries import MAX_RULES, AliasRule, NewDictionary, NewVersion
from protocols.errors import DictionaryLimitReached
from protocols.messages import Visibility
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.providers.espeak import EspeakProvider
from protocols.settings import Secret
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import Running, make_settings, running_service

CAP_S = 90
BASE = "/v1/pronunciation-dictionaries"
LONG_ALIAS = "Hyun woo, the brave little fox of the northern hills,"
CAST_RULES = [
    {"type": "alias", "string_to_replace": "Hyeon-woo", "alias": LONG_ALIAS},
    {"type": "phoneme", "string_to_replace": "tomato", "phoneme": "təˈmɑːtoʊ",
     "alphabet": "ipa"},
]
PLS = b"""<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa"
         xml:lang="en-US">
  <lexeme><grapheme>Nyx</grapheme><alias>Nix</alias></lexeme>
</lexicon>
"""
BOMB = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><lexicon>&b;</lexicon>')


async def create(svc: Running, rules: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    r = await svc.client.post(f"{BASE}/add-from-rules",
                              json={"name": "The cast", "rules": rules, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def other_user(svc: Running) -> dict[str, str]:
    _, key = await svc.service.store.create_user(f"mallory-{id(svc)}")
    return {"Authorization": f"Bearer {key}"}


async def done_job(svc: Running, body: dict[str, Any]) -> dict[str, Any]:
    r = await svc.submit(**body)
    assert r.status_code in (200, 202), r.text
    return (await svc.wait_done([r.json()["id"]]))[r.json()["id"]]


async def audio_seconds(svc: Running, job: dict[str, Any]) -> float:
    assert job["status"] == "succeeded", job
    audio = await svc.service.store.get_audio(job["audio_id"])
    assert audio is not None
    return audio.duration_s


async def wait_book(svc: Running, book_id: str) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            r = await svc.client.get(f"/v1/storybooks/{book_id}")
            assert r.status_code == 200, r.text
            if r.json()["status"] not in ("queued", "running"):
                return r.json()
            await trio.sleep(0.05)


def lines_of(book: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for page in book["pages"] for line in page["lines"]]


async def test_a_dictionary_is_versioned_and_private_to_its_owner(redis_url, store, tmp_path):
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, provider=EspeakProvider(),
                                   settings=make_settings(tmp_path)) as svc:
            made = await create(svc, CAST_RULES, description="names in the book")
            assert made["id"].startswith("pd_") and made["version_rules_num"] == 2
            assert made["rules"][1] == {**CAST_RULES[1], "case_sensitive": True,
                                        "word_boundaries": True}
            url, v1 = f"{BASE}/{made['id']}", made["version_id"]

            r = await svc.client.post(f"{url}/add-rules", json={"rules": [
                {"type": "alias", "string_to_replace": "Nyx", "alias": "Nix"}]})
            assert r.status_code == 200, r.text
            v2 = r.json()["version_id"]
            assert v2 != v1 and r.json()["version_rules_num"] == 3
            r = await svc.client.post(f"{url}/remove-rules", json={"rule_strings": ["tomato"]})
            v3 = r.json()["version_id"]
            assert r.status_code == 200 and v3 not in (v1, v2)
            now = (await svc.client.get(url)).json()
            assert now["latest_version_id"] == v3
            assert [rule["string_to_replace"] for rule in now["rules"]] == ["Hyeon-woo", "Nyx"]
            old = await svc.client.get(f"{url}/{v1}/download")  # old versions stay readable
            assert old.status_code == 200 and b"tomato" in old.content and b"Nyx" not in old.content

            # another user: the private dictionary does not exist, nor can a job use it
            other = await other_user(svc)
            for r in (await svc.client.get(url, headers=other),
                      await svc.client.get(f"{url}/{v1}/download", headers=other),
                      await svc.client.post(f"{url}/add-rules", headers=other,
                                            json={"rules": CAST_RULES[:1]}),
                      await svc.client.post("/v1/jobs", headers=other, json={
                          "text": "Hi.", "pronunciation_dictionary_locators": [
                              {"pronunciation_dictionary_id": made["id"]}]})):
                assert r.status_code == 404, r.text
                assert r.json()["code"] == "pronunciation_dictionary_not_found"
            listed = (await svc.client.get(BASE, headers=other)).json()
            assert listed["pronunciation_dictionaries"] == [] and listed["has_more"] is False

            # a public one: everybody may read and use it, only its owner change it
            shared = await create(svc, CAST_RULES[:1], visibility="public")
            seen = await svc.client.get(f"{BASE}/{shared['id']}", headers=other)
            assert seen.status_code == 200 and seen.json()["mine"] is False
            r = await svc.client.post(f"{BASE}/{shared['id']}/remove-rules", headers=other,
                                      json={"rule_strings": ["Hyeon-woo"]})
            assert r.status_code == 403
            r = await svc.client.post("/v1/jobs", headers=other, json={
                "text": "Hyeon-woo.", "pronunciation_dictionary_locators": [
                    {"pronunciation_dictionary_id": shared["id"]}]})
            assert r.status_code == 202, r.text

            # from a PLS file; a file that is not one is a 422 that says why
            r = await svc.client.post(f"{BASE}/add-from-file", data={"name": "From PLS"},
                                      files={"file": ("cast.pls", PLS, "application/pls+xml")})
            assert r.status_code == 201, r.text
            assert r.json()["rules"][0]["alias"] == "Nix"
            r = await svc.client.post(f"{BASE}/add-from-file", data={"name": "Bomb"},
                                      files={"file": ("bomb.pls", BOMB, "application/pls+xml")})
            assert r.status_code == 422 and r.json()["code"] == "invalid_pls", r.text
            r = await svc.client.post(f"{BASE}/add-from-rules", json={"name": "x", "rules": [
                {"type": "alias", "string_to_replace": "x" * 201, "alias": "y"}]})
            assert r.status_code == 422 and "string_to_replace" in r.json()["detail"]

            listed = (await svc.client.get(f"{BASE}?page_size=2")).json()
            assert len(listed["pronunciation_dictionaries"]) == 2 and listed["has_more"]
            rest = (await svc.client.get(f"{BASE}?cursor={listed['next_cursor']}")).json()
            assert len(rest["pronunciation_dictionaries"]) == 1 and not rest["has_more"]

            assert (await svc.client.delete(url)).status_code == 204
            assert (await svc.client.get(url)).status_code == 404
            r = await svc.submit("Hi.", pronunciation_dictionary_locators=[
                {"pronunciation_dictionary_id": made["id"]}])
            assert r.status_code == 404


async def test_the_cache_key_follows_the_dictionary_version(redis_url, store, tmp_path):
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, provider=EspeakProvider(),
                                   settings=make_settings(tmp_path)) as svc:
            made = await create(svc, CAST_RULES[:1])
            ref = {"pronunciation_dictionary_id": made["id"]}
            text = {"text": "Hyeon-woo went home.", "voice_id": "en-us"}
            first = await done_job(svc, {**text, "pronunciation_dictionary_locators": [ref]})
            assert first["pronunciation_dictionary_locators"] == [
                {**ref, "version_id": made["version_id"]}]  # pinned at submit
            plain = await done_job(svc, text)
            assert plain["audio_id"] != first["audio_id"] and not plain["cached"]
            assert await audio_seconds(svc, first) > await audio_seconds(svc, plain) + 1.0

            r = await svc.client.post(f"{BASE}/{made['id']}/add-rules", json={"rules": [
                {"type": "alias", "string_to_replace": "Hyeon-woo", "alias": "Hyun woo"}]})
            v2 = r.json()["version_id"]
            second = await done_job(svc, {**text, "pronunciation_dictionary_locators": [ref]})
            assert second["pronunciation_dictionary_locators"][0]["version_id"] == v2
            assert not second["cached"] and second["audio_id"] != first["audio_id"]
            again = await done_job(svc, {**text, "pronunciation_dictionary_locators": [
                {**ref, "version_id": made["version_id"]}]})
            assert again["cached"] and again["audio_id"] == first["audio_id"]
            r = await svc.submit(**text, pronunciation_dictionary_locators=[
                {**ref, "version_id": "pdv_nope"}])
            assert r.status_code == 404 and "pdv_nope" in r.json()["detail"]


async def test_a_users_default_dictionary_speaks_a_storybooks_names(redis_url, store, tmp_path):
    book = {"title": "The fox", "language": "en", "pages": [{"lines": [
        {"text": "Hyeon-woo climbed the hill."}, {"text": "The moon was far away."}]}]}
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, provider=EspeakProvider(),
                                   settings=make_settings(tmp_path)) as svc:
            made = await create(svc, CAST_RULES)
            ref = {"pronunciation_dictionary_id": made["id"]}
            r = await svc.client.put("/v1/user/pronunciation-dictionaries",
                                     json={"locators": [ref]})
            assert r.status_code == 200 and r.json() == {"locators": [ref]}
            assert (await svc.client.get("/v1/user/pronunciation-dictionaries")).json() == {
                "locators": [ref]}

            r = await svc.client.post("/v1/storybooks", json=book)  # names none: the default
            assert r.status_code == 202, r.text
            pinned = [{**ref, "version_id": made["version_id"]}]
            assert r.json()["pronunciation_dictionary_locators"] == pinned
            with_names = await wait_book(svc, r.json()["id"])
            r = await svc.client.post("/v1/storybooks", json={
                **book, "pronunciation_dictionary_locators": []})  # explicitly none
            assert "pronunciation_dictionary_locators" not in r.json()
            without = await wait_book(svc, r.json()["id"])

            named, plain = lines_of(with_names), lines_of(without)
            assert all(line["status"] == "succeeded" for line in named + plain)
            job = (await svc.client.get(f"/v1/jobs/{named[0]['job_id']}")).json()
            assert job["pronunciation_dictionary_locators"] == pinned
            assert named[0]["duration_s"] > plain[0]["duration_s"] + 1.0  # the alias is said
            assert abs(named[1]["duration_s"] - plain[1]["duration_s"]) < 0.05  # no name
            assert named[1]["audio_id"] != plain[1]["audio_id"]  # yet another cache key


async def test_a_default_the_engine_cannot_apply_is_refused_and_jobs_keep_working(
    redis_url, store, tmp_path
):
    """Found by the API fuzz run: an id that is not Chorus's was stored as a default, and the
    embedded engine then refused every later job of the user's (422)."""
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, provider=EspeakProvider(),
                                   settings=make_settings(tmp_path)) as svc:
            r = await svc.client.put("/v1/user/pronunciation-dictionaries", json={
                "locators": [{"pronunciation_dictionary_id": "elevenlabs-only"}]})
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "pronunciation_dictionary_not_found"
            assert (await svc.client.get("/v1/user/pronunciation-dictionaries")).json() == {
                "locators": []}
            job = await done_job(svc, {"text": "Still speaking."})
            assert job["status"] == "succeeded", job


async def test_with_elevenlabs_the_dictionary_lives_there_and_its_locator_is_sent(
    redis_url, store, fake_elevenlabs: FakeElevenLabs, tmp_path
):
    fake = fake_elevenlabs
    settings = make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"), elevenlabs_base_url=fake.base_url,
        elevenlabs_timeout_s=5.0,
    )
    book = {"title": "The fox", "language": "en", "pages": [
        {"lines": [{"text": "Hyeon-woo climbed the hill."}, {"text": "Then he slept."}]},
        {"lines": [{"text": "Hyeon-woo dreamt of the moon."}]}]}
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            made = await create(svc, CAST_RULES)
            row = await store.get_dictionary(made["id"])
            remote = row.provider_dictionary_id
            assert row.provider == "elevenlabs" and remote
            (v1, rules), = fake.dictionary_versions(remote)
            assert [r["string_to_replace"] for r in rules] == ["Hyeon-woo", "tomato"]

            ref = {"pronunciation_dictionary_id": made["id"]}
            await svc.client.put("/v1/user/pronunciation-dictionaries", json={"locators": [ref]})
            r = await svc.client.post("/v1/storybooks", json=book)
            assert r.status_code == 202, r.text
            finished = await wait_book(svc, r.json()["id"])
            assert finished["status"] == "succeeded", finished
            sent = [c for c in fake.calls if c.status == 200]
            assert sorted(c.text for c in sent) == sorted(
                line["text"] for page in book["pages"] for line in page["lines"])  # as written
            assert all(c.pronunciation_dictionary_locators == [
                {"pronunciation_dictionary_id": remote, "version_id": v1}] for c in sent)

            # a change is made at ElevenLabs too; the next job sends the new version
            r = await svc.client.post(f"{BASE}/{made['id']}/add-rules", json={"rules": [
                {"type": "alias", "string_to_replace": "Nyx", "alias": "Nix"}]})
            assert r.status_code == 200, r.text
            r = await svc.client.post(f"{BASE}/{made['id']}/remove-rules",
                                      json={"rule_strings": ["tomato"]})
            versions = fake.dictionary_versions(remote)
            assert len(versions) == 3
            assert [x["string_to_replace"] for x in versions[-1][1]] == ["Hyeon-woo", "Nyx"]
            job = await done_job(svc, {"text": "Nyx slept."})
            assert job["status"] == "succeeded", job
            assert fake.calls[-1].pronunciation_dictionary_locators == [
                {"pronunciation_dictionary_id": remote, "version_id": versions[-1][0]}]

            assert (await svc.client.delete(f"{BASE}/{made['id']}")).status_code == 204
            assert fake.dictionary_archived(remote)
            assert (await svc.client.get("/v1/user/pronunciation-dictionaries")).json() == {
                "locators": []}  # a deleted dictionary leaves the defaults


async def test_the_store_keeps_every_version_and_moves_the_current_one_by_compare_and_set(
    store,
):
    owner, _ = await store.create_user("ada")
    rules = (AliasRule(string_to_replace="Nyx", alias="Nix"),)
    made = await store.create_dictionary(NewDictionary(
        id="pd_1", owner=owner.id, name="n", description="", visibility=Visibility.private,
        version_id="pdv_1", rules=rules), limit=1)
    assert made.version_id == "pdv_1" and made.rules == rules
    with pytest.raises(DictionaryLimitReached):
        await store.create_dictionary(NewDictionary(
            id="pd_2", owner=owner.id, name="n", description="", visibility=Visibility.private,
            version_id="pdv_2", rules=()), limit=1)

    def change(based_on: str, version_id: str) -> NewVersion:
        return NewVersion(dictionary_id="pd_1", owner=owner.id, based_on=based_on,
                          version_id=version_id, rules=())

    assert (await store.add_dictionary_version(change("pdv_1", "pdv_b"))).version_id == "pdv_b"
    assert await store.add_dictionary_version(change("pdv_1", "pdv_c")) is None  # lost the race
    assert (await store.dictionary_version("pd_1", "pdv_1")).rules == rules  # still readable
    assert await store.dictionary_version("pd_1", "pdv_c") is None
    assert await store.resolve_dictionaries([("pd_1", None), ("pd_1", "pdv_1"),
                                             ("pd_1", "pdv_c"), ("pd_9", None)], owner.id) == [
        (True, "pdv_b"), (True, "pdv_1"), (True, None), (False, None)]
    stranger, _ = await store.create_user("bob")
    assert await store.resolve_dictionaries([("pd_1", None)], stranger.id) == [(False, None)]


async def test_a_thousand_rules_fit_in_one_request_and_one_more_does_not(
    redis_url, store, tmp_path
):
    rules = [{"type": "alias", "string_to_replace": f"Name{i:04d}", "alias": f"Alias number {i}"}
             for i in range(MAX_RULES)]
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store,
                                   settings=make_settings(tmp_path)) as svc:
            made = await create(svc, rules)  # ~75 kB: more than a job's body may be
            assert made["version_rules_num"] == MAX_RULES
            r = await svc.client.post(f"{BASE}/{made['id']}/add-rules", json={"rules": [
                {"type": "alias", "string_to_replace": "One more", "alias": "x"}]})
            assert r.status_code == 422 and r.json()["code"] == "invalid_pronunciation_rules"
            r = await svc.client.post(f"{BASE}/add-from-rules", json={
                "name": "Too many", "rules": [*rules, rules[0]]})
            assert r.status_code == 422, r.text

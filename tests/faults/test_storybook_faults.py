"""A storybook survives its process: SIGKILL of a real ``run.py`` in the middle of a book, then a
restart, ends with every line succeeded, one job per line, and each distinct line made once.

The fake provider (``CHORUS_PROVIDER=fake``) stands in for ElevenLabs. What proves "made once":
one job per line, one audio row per distinct text, and ``provider_calls`` (the shared Redis
counter, added to in the same round trip that releases a generation's single-flight lock, after
its audio row committed) never above the distinct lines. A generation whose audio committed just
before the kill, but whose lock release did not happen, is not counted (at most one per slot);
a provider call cut short by the kill before its audio was stored is made again after the
restart, and a real provider may have billed the first one (looking it up in the provider's
history before paying twice is issue 13's).
"""

from __future__ import annotations

import signal

import trio

from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from tests.support.procs import chorus_process, client, eventually, sql, unique_prefix

SLOTS = 3  # run.py's default provider concurrency
PAGES = 4
PER_PAGE = 10
REPEATED = "The wind said: hush, little one."  # one line said on every page


def book() -> dict[str, object]:
    pages = []
    for p in range(PAGES):
        lines = [{"speaker": "N", "text": f"Page {p}, line {i}: the fox walks on."}
                 for i in range(PER_PAGE - 1)]
        lines.insert(4, {"speaker": "W", "text": REPEATED})
        pages.append({"title": f"Page {p}", "lines": lines})
    return {
        "title": "Long walk",
        "cast": {"N": {"voice_id": "fake-en"}, "W": {"voice_id": "fake-en"}},
        "pages": pages,
    }


async def line_counts(database_url: str, book_id: str) -> dict[str, int]:
    rows = await sql(
        database_url,
        f"SELECT status, count(*) FROM storybook_lines WHERE book_id = '{book_id}'"
        " GROUP BY status",
    )
    return {r[0]: int(r[1]) for r in rows}


async def test_sigkill_in_the_middle_of_a_book_then_restart_finishes_it_once(
    redis_url, database_url, store, tmp_path
):
    prefix = unique_prefix()
    _, key = await store.create_user("storybook-kill")
    env = {"CHORUS_FAKE_LATENCY_S": "0.1", "CHORUS_LEASE_S": "60",
           "CHORUS_STORYBOOK_RECONCILE_S": "1"}
    total = PAGES * PER_PAGE
    distinct = total - PAGES + 1  # the repeated line is made once
    with trio.fail_after(90):
        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as first:
            async with client(first.base_url, key) as http:
                r = await http.post("/v1/storybooks", json=book())
                assert r.status_code == 202, r.text
                book_id = r.json()["id"]

            async def midway() -> dict[str, int] | None:
                counts = await line_counts(database_url, book_id)
                busy = counts.get("queued", 0) + counts.get("running", 0)
                return counts if counts.get("succeeded", 0) >= 8 and busy >= 2 else None

            await eventually(midway, 30, "the book half-way", interval=0.05)
            first.kill()
            assert await first.wait_exit(5) == -signal.SIGKILL
        at_kill = await line_counts(database_url, book_id)
        assert at_kill.get("succeeded", 0) < total, at_kill

        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as second:

            async def ended() -> str | None:
                rows = await sql(database_url,
                                 f"SELECT status FROM storybooks WHERE id = '{book_id}'")
                status = rows[0][0]
                return status if status not in ("queued", "running") else None

            assert await eventually(ended, 60, "the book to end", interval=0.1) == "succeeded"
            async with client(second.base_url, key) as http:
                view = (await http.get(f"/v1/storybooks/{book_id}")).json()
                audio = await http.get(f"/v1/storybooks/{book_id}/audio")
                assert audio.status_code == 200 and len(audio.content) > 0
            second.send_signal(signal.SIGTERM)
            assert await second.wait_exit(15) == 0, second.output

    lines = [line for page in view["pages"] for line in page["lines"]]
    assert len(lines) == total and {line["status"] for line in lines} == {"succeeded"}
    assert all(line["attempts"] == 1 for line in lines), "a line was submitted twice"
    jobs = await sql(database_url, "SELECT count(*), count(DISTINCT audio_id) FROM jobs")
    assert [int(v) for v in jobs[0]] == [total, distinct], jobs  # one job per line
    assert int((await sql(database_url, "SELECT count(*) FROM audio"))[0][0]) == distinct
    async with open_queue(redis_url, Keys(prefix), stream_timeout=5) as queue:
        stats = await queue.client.hgetall(Keys(prefix).stats)
    calls = int(stats.get(b"provider_calls", 0))
    assert distinct - SLOTS <= calls <= distinct, (calls, distinct, stats)

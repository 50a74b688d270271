"""The StorybookStore half of PgStore against the real embedded Postgres (a fresh database per
test): books, lines following their jobs, finishing, retry rounds, cancel, quota."""

from __future__ import annotations

import msgspec
import pytest
import trio

from protocols.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotCancellable,
    NotFound,
    QuotaExceeded,
    RoundRunning,
)
from protocols.messages import Audio, Job, JobStatus, Lane, NewAudio, NewJob, User, VoiceSettings
from protocols.postgres.store import PgStore
from protocols.storybooks import (
    BookStatus,
    CastMember,
    Line,
    LineStatus,
    NewLine,
    NewStorybook,
    Storybook,
)

CAP_S = 20
PERMANENT = frozenset({"provider_rejected", "voice_not_found"})
CAST = {
    "NARRATOR": CastMember(voice_id="fake-en"),
    "FOX": CastMember(voice_id="fake-ko", voice_settings=VoiceSettings(stability=0.3)),
}


def new_book(owner: str, book_id: str, pages: list[list[str]], *, key: str | None = None,
             request: str = "h1", metadata: dict | None = None) -> NewStorybook:
    """A book of ``pages`` of line texts; line ids are ``<book>-<page>-<index>``."""
    lines = tuple(
        NewLine(
            id=f"{book_id}-{p}-{i}", page=p, index=i, text=text,
            voice_id="fake-ko" if i % 2 else "fake-en", speaker="FOX" if i % 2 else "NARRATOR",
            voice_settings=VoiceSettings(stability=0.3) if i % 2 else None,
        )
        for p, texts in enumerate(pages)
        for i, text in enumerate(texts)
    )
    return NewStorybook(
        id=book_id, owner=owner, title=f"Book {book_id}", language="en",
        output_format="mp3_44100_128", cast=CAST, pause_line_ms=400, pause_page_ms=1200,
        page_titles=tuple(f"Page {p}" if p % 2 == 0 else None for p in range(len(pages))),
        lines=lines, metadata=metadata, idempotency_key=key, request_hash=request,
    )


async def submit_line(store: PgStore, line: Line, *, cached: Audio | None = None) -> Job:
    """What the runner does for a pending line: a batch-lane job (no quota: the book reserved
    it), then ``line_submitted``."""
    job, _ = await store.create_job(NewJob(
        id=f"job-{line.id}-r{line.round}", owner=(await store.get_storybook(line.book_id)).owner,
        text=line.text, voice_id=line.voice_id, language="en", output_format="mp3_44100_128",
        idempotency_key=f"{line.book_id}:{line.id}:{line.round}", request_hash="h",
        cache_key=f"ck-{line.text}", lane=Lane.batch, metadata={"line": line.id},
    ), cached=cached)
    assert await store.line_submitted(line.id, line.round, job) is not None
    return job


def audio_for(owner: str, job: Job, duration_s: float = 1.5) -> NewAudio:
    return NewAudio(
        owner=owner, cache_key=job.cache_key, format="mp3_44100_128", content_type="audio/mpeg",
        duration_s=duration_s, size=100, path=f"ab/{job.cache_key}.mp3", charge=job.characters,
    )


async def succeed(store: PgStore, job: Job, duration_s: float = 1.5) -> Job:
    await store.start_job(job.id)
    return await store.finish_job(job.id, audio_for(job.owner, job, duration_s))


async def fail(store: PgStore, job: Job, code: str = "synthesis_failed") -> None:
    await store.start_job(job.id)
    await store.fail_job(job.id, code, f"it failed: {code}")


async def run_all(store: PgStore, book: Storybook, outcomes: dict[str, str] | None = None
                  ) -> dict[str, Job]:
    """Submit every pending line and end each job: succeeded, or failed with the code given."""
    outcomes = outcomes or {}
    jobs = {}
    for line in await store.pending_lines(book.id, 1000):
        jobs[line.id] = job = await submit_line(store, line)
        if line.id in outcomes:
            await fail(store, job, outcomes[line.id])
        else:
            await succeed(store, job)
    await store.sync_lines(book_id=book.id)
    return jobs


async def two_users(store: PgStore) -> tuple[User, User]:
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    return alice, bob


# --- creating and reading -------------------------------------------------------------------------


async def test_a_book_is_stored_whole_and_read_back_as_given(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, bob = await two_users(store)
        meta = {"app": "tales", "age": [3, 5]}
        nb = new_book(alice.id, "sb_01", [["Once upon a time.", "Hello!"], ["The end."]],
                      metadata=meta)
        book, created = await store.create_storybook(nb)
        assert created and book.status is BookStatus.queued and book.round == 0
        assert (book.title, book.language, book.output_format) == ("Book sb_01", "en",
                                                                  "mp3_44100_128")
        assert book.cast == CAST and book.metadata == meta
        assert book.page_titles == ("Page 0", None)
        assert (book.lines_total, book.characters) == (3, nb.characters)
        assert (book.pause_line_ms, book.pause_page_ms) == (400, 1200)
        assert await store.get_storybook("sb_01", alice.id) == book
        assert await store.get_storybook("sb_01") == book
        lines = await store.storybook_lines("sb_01")
        assert [(ln.page, ln.index, ln.text) for ln in lines] == [
            (0, 0, "Once upon a time."), (0, 1, "Hello!"), (1, 0, "The end.")]
        assert all(ln.status is LineStatus.pending and ln.round == 0 and ln.job_id is None
                   for ln in lines)
        assert lines[1].speaker == "FOX" and lines[1].voice_id == "fake-ko"
        assert lines[1].voice_settings == VoiceSettings(stability=0.3)
        assert lines[0].voice_settings is None
        assert await store.retry_rounds("sb_01") == []
        # another owner: it does not exist for them
        assert await store.get_storybook("sb_01", bob.id) is None
        assert await store.list_storybooks(bob.id) == []
        with pytest.raises(InvalidInput):
            await store.create_storybook(new_book("no-such-user", "sb_02", [["x"]]))


async def test_list_is_newest_first_with_a_cursor(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, bob = await two_users(store)
        for i in range(5):
            await store.create_storybook(new_book(alice.id, f"sb_0{i}", [["Line."]]))
        await store.create_storybook(new_book(bob.id, "sb_09", [["Line."]]))
        first = await store.list_storybooks(alice.id, limit=3)
        assert [b.id for b in first] == ["sb_04", "sb_03", "sb_02"]
        rest = await store.list_storybooks(alice.id, before=first[-1].id, limit=3)
        assert [b.id for b in rest] == ["sb_01", "sb_00"]
        assert first[0].page_titles == ("Page 0",)


async def test_an_idempotency_key_repeat_returns_the_book_and_a_conflict_raises(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        alice, bob = await two_users(store)
        book, created = await store.create_storybook(new_book(alice.id, "sb_1", [["A."]],
                                                              key="k"))
        again, created_again = await store.create_storybook(
            new_book(alice.id, "sb_2", [["A."]], key="k"))
        assert created and not created_again and again == book
        with pytest.raises(IdempotencyConflict):
            await store.create_storybook(new_book(alice.id, "sb_3", [["B."]], key="k",
                                                  request="h2"))
        _, bobs = await store.create_storybook(new_book(bob.id, "sb_4", [["A."]], key="k"))
        assert bobs  # keys are per owner
        assert [b.id for b in await store.list_storybooks(alice.id)] == ["sb_1"]
        # concurrent creates with one key make one book
        results: list[tuple[Storybook, bool]] = []

        async def create(i: int) -> None:
            results.append(await store.create_storybook(
                new_book(alice.id, f"sb_c{i}", [["C."]], key="same")))

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(create, i)
        assert sum(created for _, created in results) == 1
        assert len({b.id for b, _ in results}) == 1


# --- quota ---------------------------------------------------------------------------------------


async def test_the_whole_book_must_fit_the_quota_or_nothing_is_stored(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        big = new_book(alice.id, "sb_big", [["x" * 60], ["y" * 50]])  # 110 characters
        with pytest.raises(QuotaExceeded) as raised:
            await store.create_storybook(big, quota=100)
        extra = raised.value.extra
        assert (extra["limit"], extra["used"], extra["reserved"], extra["remaining"],
                extra["required"]) == (100, 0, 0, 100, 110)
        assert await store.get_storybook("sb_big") is None
        assert await store.storybook_lines("sb_big") == []
        book, _ = await store.create_storybook(new_book(alice.id, "sb_ok", [["z" * 60]]),
                                               quota=100)
        # its pending lines reserve their characters: against jobs and other books alike
        assert (await store.usage(alice.id)).reserved == 60
        with pytest.raises(QuotaExceeded) as raised:
            await store.create_storybook(new_book(alice.id, "sb_2", [["w" * 41]]), quota=100)
        assert raised.value.extra["reserved"] == 60 and raised.value.extra["required"] == 41
        job = NewJob(id="j1", owner=alice.id, text="v" * 41, voice_id="fake-en", language="en",
                     output_format="mp3_44100_128", idempotency_key=None, request_hash="h")
        with pytest.raises(QuotaExceeded):
            await store.create_job(job, quota=100)
        # a released line is counted once, by its job
        line, = await store.pending_lines(book.id, 10)
        await submit_line(store, line)
        assert (await store.usage(alice.id)).reserved == 60
        # a cancelled book frees what it had not released
        await store.create_storybook(new_book(alice.id, "sb_3", [["u" * 30]]), quota=100)
        assert (await store.usage(alice.id)).reserved == 90
        await store.cancel_storybook("sb_3", alice.id)
        assert (await store.usage(alice.id)).reserved == 60
        fits, _ = await store.create_job(msgspec.structs.replace(job, text="v" * 40), quota=100)
        assert fits.status is JobStatus.queued


async def test_concurrent_books_cannot_squeeze_past_the_quota_together(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        accepted, refused = [], []

        async def create(i: int) -> None:
            try:
                accepted.append(await store.create_storybook(
                    new_book(alice.id, f"sb_{i}", [["a" * 15, "b" * 15]]), quota=100))
            except QuotaExceeded:
                refused.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(create, i)
        assert (len(accepted), len(refused)) == (3, 5)  # 3 × 30 fit in 100
        assert (await store.usage(alice.id)).reserved == 90


# --- the runner's writes -------------------------------------------------------------------------


async def test_line_submitted_follows_the_job_once_per_round(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        book, _ = await store.create_storybook(new_book(alice.id, "sb", [["One.", "Two."]]))
        one, two = await store.pending_lines(book.id, 10)
        job = await submit_line(store, one)
        line, = [ln for ln in await store.storybook_lines(book.id) if ln.id == one.id]
        assert (line.status, line.job_id, line.attempts) == (LineStatus.queued, job.id, 1)
        assert await store.line_submitted(one.id, 0, job) is None  # a repeat
        assert await store.line_submitted(two.id, 1, job) is None  # not its round
        # a line answered from the cache: its job is already succeeded, and so is the line
        done = await succeed(store, job, duration_s=2.25)
        cached = await store.get_audio(done.audio_id)
        other, _ = await store.create_job(NewJob(
            id="j-two", owner=alice.id, text="One.", voice_id="fake-en", language="en",
            output_format="mp3_44100_128", idempotency_key=None, request_hash="h",
            cache_key=done.cache_key, lane=Lane.batch,
        ), cached=cached)
        assert other.status is JobStatus.succeeded and other.cached
        line = await store.line_submitted(two.id, 0, other)
        assert line.status is LineStatus.succeeded and line.audio_id == other.audio_id
        assert line.duration_s == 2.25 and line.attempts == 1
        assert await store.pending_lines(book.id, 10) == []


async def test_sync_lines_brings_each_line_up_to_its_job(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        texts = ["queued", "running", "succeeded", "failed", "dead", "cancelled"]
        book, _ = await store.create_storybook(new_book(alice.id, "sb", [texts]))
        other, _ = await store.create_storybook(new_book(alice.id, "sb_other", [["x."]]))
        lines = await store.pending_lines(book.id, 10)
        jobs = {ln.text: await submit_line(store, ln) for ln in lines}
        other_job = await submit_line(store, (await store.pending_lines(other.id, 1))[0])
        await store.start_job(other_job.id)
        assert await store.sync_lines(book_id=book.id) == []  # nothing moved yet
        await store.start_job(jobs["running"].id)
        await succeed(store, jobs["succeeded"], duration_s=3.5)
        await fail(store, jobs["failed"], "provider_rejected")
        await store.start_job(jobs["dead"].id)
        await store.fail_job(jobs["dead"].id, "max_deliveries_exceeded", "gave up",
                             status=JobStatus.dead)
        await store.cancel_job(jobs["cancelled"].id)
        changed = await store.sync_lines(book_id=book.id)
        assert [ln.text for ln in changed] == texts[1:]  # only what changed, reading order
        by_text = {ln.text: ln for ln in await store.storybook_lines(book.id)}
        assert {t: by_text[t].status.value for t in texts} == {
            "queued": "queued", "running": "running", "succeeded": "succeeded",
            "failed": "failed", "dead": "failed", "cancelled": "cancelled"}
        ok = by_text["succeeded"]
        assert ok.audio_id == (await store.get_job(jobs["succeeded"].id)).audio_id
        assert ok.duration_s == 3.5 and ok.error_code is None
        assert (by_text["failed"].error_code, by_text["failed"].error_message) == (
            "provider_rejected", "it failed: provider_rejected")
        assert by_text["dead"].error_code == "max_deliveries_exceeded"
        assert by_text["running"].audio_id is None
        # the other book was left alone; by job id it moves
        assert (await store.storybook_lines(other.id))[0].status is LineStatus.queued
        moved = await store.sync_lines(job_ids=[other_job.id, jobs["queued"].id])
        assert [ln.id for ln in moved] == [f"{other.id}-0-0"]
        assert moved[0].status is LineStatus.running
        # running -> succeeded later: a second sync moves it once
        await succeed(store, jobs["running"])
        assert [ln.text for ln in await store.sync_lines(book_id=book.id)] == ["running"]
        assert await store.sync_lines(book_id=book.id) == []


async def test_a_book_ends_once_every_line_has_with_its_status(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        statuses = {}
        for name, failures in (("all", set()), ("some", {0}), ("none", {0, 1})):
            book, _ = await store.create_storybook(new_book(alice.id, name, [["A.", "B."]]))
            await store.mark_running(book.id)
            assert (await store.get_storybook(book.id)).status is BookStatus.running
            assert await store.finish_storybook(book.id) is None  # lines still pending
            await run_all(store, book, {f"{name}-0-{i}": "synthesis_failed" for i in failures})
            ended = await store.finish_storybook(book.id)
            assert ended is not None and ended.finished_at is not None
            statuses[name] = ended.status
            assert await store.finish_storybook(book.id) is None  # a repeat: already ended
            assert (await store.get_storybook(book.id)).status is ended.status
        assert statuses == {"all": BookStatus.succeeded, "some": BookStatus.partial,
                            "none": BookStatus.failed}


async def test_the_runner_sees_active_books_oldest_first_and_pending_lines_in_order(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        for name in ("sb_a", "sb_b", "sb_c"):
            await store.create_storybook(new_book(alice.id, name, [["1.", "2."], ["3."]]))
        await run_all(store, (await store.get_storybook("sb_b")))
        await store.finish_storybook("sb_b")
        assert [b.id for b in await store.active_storybooks()] == ["sb_a", "sb_c"]
        assert [b.id for b in await store.active_storybooks(limit=1)] == ["sb_a"]
        first_two = await store.pending_lines("sb_a", 2)
        assert [(ln.page, ln.index) for ln in first_two] == [(0, 0), (0, 1)]
        await submit_line(store, first_two[0])
        assert [ln.text for ln in await store.pending_lines("sb_a", 10)] == ["2.", "3."]
        assert await store.line_counts("sb_a") == {
            "pending": 2, "queued": 1, "running": 0, "succeeded": 0, "failed": 0,
            "cancelled": 0}
        # the assembled audio is kept only on an ended book
        await store.set_storybook_audio("sb_a", "books/sb_a.mp3")
        assert (await store.get_storybook("sb_a")).audio_path is None
        await store.set_storybook_audio("sb_b", "books/sb_b.mp3")
        assert (await store.get_storybook("sb_b")).audio_path == "books/sb_b.mp3"


# --- retry rounds --------------------------------------------------------------------------------


async def test_a_retry_round_reruns_failed_lines_and_records_its_outcome(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, bob = await two_users(store)
        book, _ = await store.create_storybook(new_book(alice.id, "sb", [["A.", "B.", "C."]]))
        with pytest.raises(RoundRunning):
            await store.start_round(book.id, alice.id, line_ids=None, force=False,
                                    permanent=PERMANENT)
        await run_all(store, book, {"sb-0-1": "synthesis_failed", "sb-0-2": "provider_rejected"})
        assert (await store.finish_storybook(book.id)).status is BookStatus.partial
        await store.set_storybook_audio(book.id, "books/sb.mp3")
        with pytest.raises(NotFound):  # not bob's
            await store.start_round(book.id, bob.id, line_ids=None, force=False,
                                    permanent=PERMANENT)
        # the permanent failure is skipped without force
        first = await store.start_round(book.id, alice.id, line_ids=None, force=False,
                                        permanent=PERMANENT)
        assert (first.number, first.scope, first.forced) == (1, "failed", False)
        assert first.line_ids == ("sb-0-1",) and first.requested_by == alice.id
        again = await store.get_storybook(book.id)
        assert (again.status, again.round, again.finished_at, again.audio_path) == (
            BookStatus.running, 1, None, None)
        line, = await store.pending_lines(book.id, 10)
        assert (line.id, line.round, line.job_id, line.error_code, line.attempts) == (
            "sb-0-1", 1, None, None, 1)
        with pytest.raises(RoundRunning):  # 409 while the round runs
            await store.start_round(book.id, alice.id, line_ids=None, force=True,
                                    permanent=PERMANENT)
        await run_all(store, again)  # the retried line succeeds this time
        ended = await store.finish_storybook(book.id)
        assert ended.status is BookStatus.partial  # the permanent one is still failed
        rounds = await store.retry_rounds(book.id)
        assert [(r.number, r.succeeded, r.failed) for r in rounds] == [(1, 1, 0)]
        assert rounds[0].finished_at is not None
        # nothing left without force; with force the permanent failure runs again
        with pytest.raises(InvalidInput):
            await store.start_round(book.id, alice.id, line_ids=None, force=False,
                                    permanent=PERMANENT)
        forced = await store.start_round(book.id, alice.id, line_ids=None, force=True,
                                         permanent=PERMANENT)
        assert (forced.number, forced.forced, forced.line_ids) == (2, True, ("sb-0-2",))
        await run_all(store, await store.get_storybook(book.id), {"sb-0-2": "provider_rejected"})
        assert (await store.finish_storybook(book.id)).status is BookStatus.partial
        rounds = await store.retry_rounds(book.id)
        assert [(r.number, r.succeeded, r.failed) for r in rounds] == [(1, 1, 0), (2, 0, 1)]
        line, = [ln for ln in await store.storybook_lines(book.id) if ln.id == "sb-0-2"]
        assert (line.round, line.attempts) == (2, 2)


async def test_a_retry_of_listed_lines_checks_them(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        book, _ = await store.create_storybook(new_book(alice.id, "sb", [["A.", "B.", "C."]]))
        await store.create_storybook(new_book(alice.id, "sb_x", [["X."]]))
        await run_all(store, book, {"sb-0-0": "synthesis_failed", "sb-0-2": "voice_not_found"})
        await store.finish_storybook(book.id)

        async def retry(ids: list[str], force: bool = False):
            return await store.start_round(book.id, alice.id, line_ids=ids, force=force,
                                           permanent=PERMANENT)

        with pytest.raises(InvalidInput) as raised:
            await retry(["sb-0-0", "nope", "sb_x-0-0"])  # another book's line is unknown too
        assert raised.value.extra["lines"] == ["nope", "sb_x-0-0"]
        with pytest.raises(InvalidInput) as raised:
            await retry(["sb-0-0", "sb-0-1"])  # succeeded: not retried
        assert raised.value.extra["lines"] == ["sb-0-1"]
        with pytest.raises(InvalidInput):
            await retry(["sb-0-2"])  # only a permanent failure listed, no force
        assert await store.retry_rounds(book.id) == []  # nothing recorded by refusals
        chosen = await retry(["sb-0-2", "sb-0-0", "sb-0-0"])
        assert (chosen.scope, chosen.line_ids) == ("listed", ("sb-0-0",))
        assert [ln.id for ln in await store.pending_lines(book.id, 10)] == ["sb-0-0"]


# --- cancel --------------------------------------------------------------------------------------


async def test_cancel_stops_queued_work_and_lets_running_lines_finish(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, bob = await two_users(store)
        book, _ = await store.create_storybook(
            new_book(alice.id, "sb", [["Running.", "Queued.", "Done."], ["Pending."]]))
        running_line, queued_line, done_line, _ = await store.storybook_lines(book.id)
        running = await submit_line(store, running_line)
        queued = await submit_line(store, queued_line)
        done = await submit_line(store, done_line)
        await store.start_job(running.id)
        await succeed(store, done)
        await store.sync_lines(book_id=book.id)
        assert await store.cancel_storybook(book.id, bob.id) is None  # not bob's
        cancelled = await store.cancel_storybook(book.id, alice.id)
        assert cancelled.cancel_requested and cancelled.status is BookStatus.queued
        assert (await store.get_job(queued.id)).status is JobStatus.cancelled
        assert (await store.get_job(running.id)).status is JobStatus.running  # untouched
        statuses = [ln.status for ln in await store.storybook_lines(book.id)]
        assert statuses == [LineStatus.running, LineStatus.cancelled, LineStatus.succeeded,
                            LineStatus.cancelled]
        assert (await store.usage(alice.id)).reserved == running.characters
        assert await store.finish_storybook(book.id) is None  # a line still runs
        assert (await store.cancel_storybook(book.id, alice.id)).cancel_requested  # a repeat
        await store.finish_job(running.id, audio_for(alice.id, running))
        await store.sync_lines(job_ids=[running.id])
        ended = await store.finish_storybook(book.id)
        assert ended.status is BookStatus.cancelled
        with pytest.raises(NotCancellable):
            await store.cancel_storybook(book.id, alice.id)
        # charged only what ran
        assert (await store.usage(alice.id)).used == running.characters + done.characters


async def test_a_retry_after_cancel_runs_the_failed_lines_and_forgets_the_cancel(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await two_users(store)
        book, _ = await store.create_storybook(new_book(alice.id, "sb", [["A.", "B."]]))
        first, _ = await store.pending_lines(book.id, 10)
        job = await submit_line(store, first)
        await fail(store, job)
        await store.cancel_storybook(book.id, alice.id)
        await store.sync_lines(book_id=book.id)
        assert (await store.finish_storybook(book.id)).status is BookStatus.cancelled
        retried = await store.start_round(book.id, alice.id, line_ids=None, force=False,
                                          permanent=PERMANENT)
        assert retried.line_ids == (first.id,)
        assert not (await store.get_storybook(book.id)).cancel_requested
        await run_all(store, await store.get_storybook(book.id))
        assert (await store.finish_storybook(book.id)).status is BookStatus.partial

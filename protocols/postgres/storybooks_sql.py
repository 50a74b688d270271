"""The SQL behind the storybook half of PgStore (``protocols/postgres/storybooks.py``):
asyncio-flavoured functions of an asyncpg connection, like ``jobs_sql``; imports neither asyncio
nor asyncpg (errors are recognised by SQLSTATE).

A line follows its job: the job row stays the truth of each generation, and a line's status is
brought up to it by compare-and-set statements (``line_submitted``, ``sync_lines``) that read
the job row itself, so a repeated or late call has no second effect. The whole book is checked
against the owner's quota at submit (``jobs_sql.check_quota``, under the same per-owner lock as
a job), and its pending lines stay reserved until they become jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from protocols.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotCancellable,
    NotFound,
    RoundRunning,
    StoreUnavailable,
)
from protocols.messages import VoiceSettings
from protocols.postgres.dictionaries_sql import decode_refs, encode_refs
from protocols.postgres.jobs_sql import (
    FOREIGN_KEY_VIOLATION,
    check_quota,
    decode_metadata,
    encode_metadata,
)
from protocols.storybooks import (
    BookStatus,
    CastMember,
    Line,
    LineStatus,
    NewStorybook,
    RetryRound,
    Storybook,
)

_BOOK = (
    "id, owner, title, language, output_format, cast_members, status, pause_line_ms,"
    " pause_page_ms, lines_total, characters, created_at, updated_at, metadata,"
    " idempotency_key, request_hash, round, cancel_requested, finished_at, audio_path,"
    " dictionaries"
)
_LINE = (
    "id, book_id, page, index, speaker, text, voice_id, voice_settings, status, job_id,"
    " attempts, round, error_code, error_message, audio_id, duration_s, characters"
)
_LINE_L = ", ".join(f"l.{c.strip()}" for c in _LINE.split(","))  # qualified, for joins
_ROUND = (
    "book_id, number, requested_by, requested_at, scope, forced, line_ids, succeeded, failed,"
    " finished_at"
)
_ACTIVE = "status IN ('queued', 'running')"
_OPEN_LINE = "status IN ('pending', 'queued', 'running')"


def _titles(alias: str) -> str:
    return (
        "(SELECT coalesce(array_agg(p.title ORDER BY p.page), '{}') FROM storybook_pages p"
        f" WHERE p.book_id = {alias}.id) AS page_titles"
    )


_SELECT_BOOK = f"SELECT {_BOOK}, {_titles('b')} FROM storybooks b"
_cast_decoder = msgspec.json.Decoder(dict[str, CastMember])
_settings_decoder = msgspec.json.Decoder(VoiceSettings)


def _book(row: Any) -> Storybook | None:
    if row is None:
        return None
    fields = dict(row)
    cast = fields.pop("cast_members")
    return Storybook(
        **{
            **fields,
            "cast": _cast_decoder.decode(cast),
            "dictionaries": decode_refs(fields["dictionaries"]),
            "status": BookStatus(fields["status"]),
            "metadata": decode_metadata(fields["metadata"]),
            "page_titles": tuple(fields["page_titles"]),
        }
    )


def _line(row: Any) -> Line:
    fields = dict(row)
    settings = fields["voice_settings"]
    return Line(
        **{
            **fields,
            "status": LineStatus(fields["status"]),
            "voice_settings": None if settings is None else _settings_decoder.decode(settings),
        }
    )


def _round(row: Any) -> RetryRound:
    return RetryRound(**{**dict(row), "line_ids": tuple(row["line_ids"])})


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


# --- creating and reading ------------------------------------------------------------------------

_INSERT_BOOK = (
    "INSERT INTO storybooks (id, owner, title, language, output_format, cast_members,"
    " pause_line_ms, pause_page_ms, metadata, idempotency_key, request_hash, lines_total,"
    " characters, dictionaries) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9::jsonb, $10,"
    " $11, $12, $13, $14::jsonb) ON CONFLICT DO NOTHING RETURNING id"
)
_INSERT_PAGES = (
    "INSERT INTO storybook_pages (book_id, page, title)"
    " SELECT $1, i.page, i.title FROM unnest($2::integer[], $3::text[]) AS i(page, title)"
)
_INSERT_LINES = (
    "INSERT INTO storybook_lines (id, book_id, page, index, speaker, text, characters, voice_id,"
    " voice_settings) SELECT i.id, $1, i.page, i.index, i.speaker, i.text, i.characters,"
    " i.voice_id, i.voice_settings::jsonb FROM unnest($2::text[], $3::integer[], $4::integer[],"
    " $5::text[], $6::text[], $7::integer[], $8::text[], $9::text[])"
    " AS i(id, page, index, speaker, text, characters, voice_id, voice_settings)"
)


async def _existing(conn: Any, book: NewStorybook) -> Storybook | None:
    """The owner's book with this idempotency key (or id); IdempotencyConflict if it differs."""
    row = None
    if book.idempotency_key is not None:
        row = await conn.fetchrow(
            f"{_SELECT_BOOK} WHERE owner = $1 AND idempotency_key = $2",
            book.owner, book.idempotency_key,
        )
    row = row or await conn.fetchrow(f"{_SELECT_BOOK} WHERE id = $1", book.id)
    if row is None:
        return None
    existing = _book(row)
    if existing.owner != book.owner or existing.request_hash != book.request_hash:
        raise IdempotencyConflict("this idempotency_key was used for a different storybook")
    return existing


async def create_storybook(
    conn: Any, book: NewStorybook, quota: int | None
) -> tuple[Storybook, bool]:
    """Insert the book, its pages and its lines (pending, round 0) in one transaction, or
    return the owner's book with the same idempotency key. With a ``quota`` the whole book
    must fit (``QuotaExceeded``, nothing inserted)."""
    lines = book.lines
    for _ in range(3):  # a concurrent create with the same key may roll back under us
        try:
            async with conn.transaction():
                if (existing := await _existing(conn, book)) is not None:
                    return existing, False
                if quota is not None:
                    await check_quota(conn, book.owner, book.characters, quota, "This storybook")
                inserted = await conn.fetchval(
                    _INSERT_BOOK, book.id, book.owner, book.title, book.language,
                    book.output_format, _json(book.cast), book.pause_line_ms,
                    book.pause_page_ms, encode_metadata(book.metadata), book.idempotency_key,
                    book.request_hash, len(lines), book.characters,
                    encode_refs(book.dictionaries),
                )
                if inserted is not None:
                    await conn.execute(
                        _INSERT_PAGES, book.id, list(range(len(book.page_titles))),
                        list(book.page_titles),
                    )
                    await conn.execute(
                        _INSERT_LINES, book.id, [ln.id for ln in lines],
                        [ln.page for ln in lines], [ln.index for ln in lines],
                        [ln.speaker for ln in lines], [ln.text for ln in lines],
                        [ln.characters for ln in lines], [ln.voice_id for ln in lines],
                        [_json(ln.voice_settings) for ln in lines],
                    )
                    created = await get_storybook(conn, book.id, None)
                    assert created is not None
                    return created, True
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != FOREIGN_KEY_VIOLATION:
                raise
            raise InvalidInput("unknown storybook owner") from exc
        # not inserted: the same key (or id) was committed meanwhile
        if (existing := await _existing(conn, book)) is not None:
            return existing, False
    raise StoreUnavailable("storybook creation kept racing; retry")


async def get_storybook(conn: Any, book_id: str, owner: str | None) -> Storybook | None:
    return _book(await conn.fetchrow(
        f"{_SELECT_BOOK} WHERE id = $1 AND ($2::text IS NULL OR owner = $2)", book_id, owner
    ))


async def list_storybooks(
    conn: Any, owner: str, before: str | None, limit: int
) -> list[Storybook]:
    rows = await conn.fetch(
        f"{_SELECT_BOOK} WHERE owner = $1 AND ($2::text IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3",
        owner, before, limit,
    )
    return [_book(r) for r in rows]


async def storybook_lines(conn: Any, book_id: str) -> list[Line]:
    rows = await conn.fetch(
        f"SELECT {_LINE} FROM storybook_lines WHERE book_id = $1 ORDER BY page, index", book_id
    )
    return [_line(r) for r in rows]


async def retry_rounds(conn: Any, book_id: str) -> list[RetryRound]:
    rows = await conn.fetch(
        f"SELECT {_ROUND} FROM storybook_rounds WHERE book_id = $1 ORDER BY number", book_id
    )
    return [_round(r) for r in rows]


# --- the runner ----------------------------------------------------------------------------------


async def active_storybooks(conn: Any, limit: int) -> list[Storybook]:
    rows = await conn.fetch(
        f"{_SELECT_BOOK} WHERE {_ACTIVE} ORDER BY created_at, id LIMIT $1", limit
    )
    return [_book(r) for r in rows]


async def pending_lines(conn: Any, book_id: str, limit: int) -> list[Line]:
    rows = await conn.fetch(
        f"SELECT {_LINE} FROM storybook_lines WHERE book_id = $1 AND status = 'pending'"
        " ORDER BY page, index LIMIT $2",
        book_id, limit,
    )
    return [_line(r) for r in rows]


async def line_counts(conn: Any, book_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM storybook_lines WHERE book_id = $1 GROUP BY status",
        book_id,
    )
    counts = {str(s): 0 for s in LineStatus}
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


#: a line's status and outcome from its job's row (``j``) and the job's audio row (``a``)
_FOLLOW = "CASE WHEN j.status = 'dead' THEN 'failed' ELSE j.status END"
_FOLLOW_SET = (
    f"status = {_FOLLOW},"
    " error_code = CASE WHEN j.status IN ('failed', 'dead') THEN j.error_code END,"
    " error_message = CASE WHEN j.status IN ('failed', 'dead') THEN j.error_message END,"
    " audio_id = CASE WHEN j.status = 'succeeded' THEN j.audio_id END,"
    " duration_s = CASE WHEN j.status = 'succeeded' THEN a.duration_s END"
)


async def line_submitted(conn: Any, line_id: str, round_: int, job_id: str) -> Line | None:
    """A pending line of ``round_`` now has its job: status and outcome as the job row is now
    (queued, or already ended when answered from the cache), attempts + 1. None if the line is
    no longer pending in that round (a repeat) or the job is unknown."""
    row = await conn.fetchrow(
        f"UPDATE storybook_lines l SET {_FOLLOW_SET}, job_id = j.id, attempts = l.attempts + 1"
        " FROM jobs j LEFT JOIN audio a ON a.id = j.audio_id"
        " WHERE l.id = $1 AND l.status = 'pending' AND l.round = $2 AND j.id = $3"
        f" RETURNING {_LINE_L}",
        line_id, round_, job_id,
    )
    return None if row is None else _line(row)


async def fail_line(
    conn: Any, line_id: str, round_: int, code: str, message: str
) -> Line | None:
    """A pending line of ``round_`` that could not become a job: failed with the typed error
    (a failed line reserves no quota). None if it is no longer pending in that round."""
    row = await conn.fetchrow(
        "UPDATE storybook_lines SET status = 'failed', error_code = $3, error_message = $4,"
        " attempts = attempts + 1"
        " WHERE id = $1 AND status = 'pending' AND round = $2"
        f" RETURNING {_LINE}",
        line_id, round_, code, message[:2000],
    )
    return None if row is None else _line(row)


async def sync_lines(
    conn: Any, book_id: str | None, job_ids: Sequence[str]
) -> list[Line]:
    """One statement: queued/running lines (of ``book_id`` and/or whose job is in ``job_ids``;
    every book's when neither is given) brought up to their job; the lines that changed."""
    where, args = [], []
    if book_id is not None:
        args.append(book_id)
        where.append(f" AND l.book_id = ${len(args)}")
    if job_ids:
        args.append(list(job_ids))
        where.append(f" AND l.job_id = ANY(${len(args)}::text[])")
    rows = await conn.fetch(
        f"UPDATE storybook_lines l SET {_FOLLOW_SET}"
        " FROM jobs j LEFT JOIN audio a ON a.id = j.audio_id"
        " WHERE j.id = l.job_id AND l.status IN ('queued', 'running')"
        f" AND l.status <> {_FOLLOW}{''.join(where)}"
        f" RETURNING {_LINE_L}",
        *args,
    )
    return sorted((_line(r) for r in rows), key=lambda ln: (ln.book_id, ln.page, ln.index))


_FINISH = (
    "WITH c AS (SELECT count(*) AS total,"
    f" count(*) FILTER (WHERE {_OPEN_LINE}) AS open,"
    " count(*) FILTER (WHERE status = 'succeeded') AS ok"
    " FROM storybook_lines WHERE book_id = $1),"
    " b AS (UPDATE storybooks SET status = CASE WHEN cancel_requested THEN 'cancelled'"
    " WHEN c.ok = c.total THEN 'succeeded' WHEN c.ok = 0 THEN 'failed' ELSE 'partial' END,"
    " finished_at = now(), updated_at = now()"
    f" FROM c WHERE storybooks.id = $1 AND storybooks.{_ACTIVE} AND c.open = 0"
    " RETURNING storybooks.*),"
    # the latest retry round's outcome: its own lines only
    " r AS (UPDATE storybook_rounds n SET finished_at = now(),"
    " succeeded = (SELECT count(*) FROM storybook_lines l WHERE l.book_id = $1"
    " AND l.round = n.number AND l.status = 'succeeded'),"
    " failed = (SELECT count(*) FROM storybook_lines l WHERE l.book_id = $1"
    " AND l.round = n.number AND l.status = 'failed')"
    " FROM b WHERE n.book_id = b.id AND n.number = b.round)"
    f" SELECT {_BOOK}, {_titles('b')} FROM b"
)


async def finish_storybook(conn: Any, book_id: str) -> Storybook | None:
    """Compare-and-set: ends a queued/running book none of whose lines is pending, queued or
    running; the book if this call ended it, else None."""
    return _book(await conn.fetchrow(_FINISH, book_id))


async def mark_running(conn: Any, book_id: str) -> None:
    await conn.execute(
        "UPDATE storybooks SET status = 'running', updated_at = now()"
        " WHERE id = $1 AND status = 'queued'",
        book_id,
    )


async def start_round(
    conn: Any, book_id: str, owner: str, line_ids: Sequence[str] | None, force: bool,
    permanent: frozenset[str], quota: int | None = None,
) -> RetryRound:
    """A new retry round of an ended book (see ``StorybookStore.start_round``). Listed lines
    must be the book's and failed; lines whose error is ``permanent`` are skipped unless
    ``force``; the book is running again, its assembled audio and cancel request forgotten."""
    async with conn.transaction():
        book = await conn.fetchrow(
            "SELECT status, round FROM storybooks WHERE id = $1 AND owner = $2 FOR UPDATE",
            book_id, owner,
        )
        if book is None:
            raise NotFound("storybook not found")
        if not BookStatus(book["status"]).terminal:
            raise RoundRunning("the storybook is still running; retry once it has ended")
        if line_ids is not None:
            wanted = list(dict.fromkeys(line_ids))
            rows = await conn.fetch(
                "SELECT id, status, error_code, characters FROM storybook_lines"
                " WHERE book_id = $1 AND id = ANY($2::text[]) ORDER BY page, index",
                book_id, wanted,
            )
            found = {r["id"]: r for r in rows}
            if unknown := [i for i in wanted if i not in found]:
                raise InvalidInput(
                    f"{len(unknown)} line id(s) are not lines of this storybook",
                    field="lines", lines=unknown[:50],
                )
            if not_failed := [i for i in wanted if found[i]["status"] != "failed"]:
                raise InvalidInput(
                    f"only failed lines can be retried; {len(not_failed)} listed line(s)"
                    " have not failed", field="lines", lines=not_failed[:50],
                )
        else:
            rows = await conn.fetch(
                "SELECT id, status, error_code, characters FROM storybook_lines"
                " WHERE book_id = $1 AND status = 'failed' ORDER BY page, index",
                book_id,
            )
        picked = [r for r in rows if force or r["error_code"] not in permanent]
        chosen = [r["id"] for r in picked]
        if not chosen:
            skipped = len(rows)
            raise InvalidInput(
                "nothing to retry: no failed line" if not skipped else
                f"nothing to retry: {skipped} failed line(s) failed for good"
                " (their error is permanent); retry with force to run them anyway",
                skipped=skipped,
            )
        if quota is not None:  # the round's lines are reserved again: they must fit
            required = sum(int(r["characters"]) for r in picked)
            await check_quota(conn, owner, required, quota, "This retry round")
        number = book["round"] + 1
        row = await conn.fetchrow(
            "INSERT INTO storybook_rounds (book_id, number, requested_by, scope, forced,"
            f" line_ids) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_ROUND}",
            book_id, number, owner, "failed" if line_ids is None else "listed", force, chosen,
        )
        await conn.execute(
            "UPDATE storybook_lines SET status = 'pending', round = $3, job_id = NULL,"
            " error_code = NULL, error_message = NULL, audio_id = NULL, duration_s = NULL"
            " WHERE book_id = $1 AND id = ANY($2::text[]) AND status = 'failed'",
            book_id, chosen, number,
        )
        await conn.execute(
            "UPDATE storybooks SET status = 'running', round = $2, finished_at = NULL,"
            " audio_path = NULL, cancel_requested = false, updated_at = now() WHERE id = $1",
            book_id, number,
        )
        return _round(row)


_CANCEL_QUEUED = (
    # lines whose job has not started: the job is withdrawn (compare-and-set), then the line
    "WITH j AS (UPDATE jobs SET status = 'cancelled', finished_at = now()"
    " FROM storybook_lines l WHERE l.book_id = $1 AND l.status = 'queued'"
    " AND jobs.id = l.job_id AND jobs.status = 'queued' RETURNING jobs.id)"
    " UPDATE storybook_lines l SET status = 'cancelled' FROM j"
    " WHERE l.book_id = $1 AND l.job_id = j.id AND l.status = 'queued'"
)


async def cancel_storybook(conn: Any, book_id: str, owner: str) -> Storybook | None:
    """In one transaction: the cancel request, pending lines cancelled, and lines whose job is
    still queued cancelled with their jobs. Running lines finish (``finish_storybook`` then
    ends the book ``cancelled``). None if not the owner's; ``NotCancellable`` once ended."""
    async with conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM storybooks WHERE id = $1 AND owner = $2 FOR UPDATE",
            book_id, owner,
        )
        if status is None:
            return None
        if BookStatus(status).terminal:
            raise NotCancellable(f"the storybook has already ended ({status})")
        await conn.execute(
            "UPDATE storybooks SET cancel_requested = true, updated_at = now() WHERE id = $1",
            book_id,
        )
        await conn.execute(
            "UPDATE storybook_lines SET status = 'cancelled'"
            " WHERE book_id = $1 AND status = 'pending'",
            book_id,
        )
        await conn.execute(_CANCEL_QUEUED, book_id)
        return await get_storybook(conn, book_id, owner)


async def set_storybook_audio(conn: Any, book_id: str, path: str) -> None:
    """Only on an ended book: an assembly that finishes after a retry round began is not
    kept (the round forgets the audio)."""
    await conn.execute(
        "UPDATE storybooks SET audio_path = $2, updated_at = now()"
        f" WHERE id = $1 AND NOT {_ACTIVE}",
        book_id, path,
    )

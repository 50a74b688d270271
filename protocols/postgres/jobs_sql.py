"""The SQL behind PgStore (``protocols/postgres/store.py``): asyncio-flavoured functions of an
asyncpg connection, run on the store's trio-asyncio loop. Never call them directly; this module
imports neither asyncio nor asyncpg (errors are recognised by SQLSTATE).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from protocols.errors import (
    AlreadyExists,
    ChorusError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    StoreUnavailable,
)
from protocols.messages import (
    Alignment,
    Audio,
    DictionaryRef,
    Job,
    JobStatus,
    Lane,
    Metadata,
    NewAudio,
    NewJob,
    SpeechParams,
    User,
)

UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"

_MIGRATION_LOCK = 0x63686F72_7573  # pg_advisory_lock key: "chorus"
_QUOTA_LOCK = 0x71756F74  # pg_advisory_xact_lock(_QUOTA_LOCK, hashtext(owner)): "quot"
_USER = "id, name, role, created_at, monthly_quota, pronunciation_dictionaries"
_refs = msgspec.json.Decoder(tuple[DictionaryRef, ...])
_JOB = (
    "id, owner, status, text, voice_id, language, output_format, idempotency_key, request_hash,"
    " attempts, characters, error_code, error_message, audio_id, created_at, started_at,"
    " finished_at, params, cache_key, cached, request_ids, character_cost, lane, metadata,"
    " request_id"
)
_PERIOD = "date_trunc('month', now() AT TIME ZONE 'UTC')::date"  # the quota month (UTC)
_params_decoder = msgspec.json.Decoder(SpeechParams)
_metadata_decoder = msgspec.json.Decoder(Metadata)
_JOB_Q = ", ".join(f"jobs.{c.strip()}" for c in _JOB.split(","))  # qualified, for joins
_AUDIO = "id, owner, cache_key, format, content_type, duration_s, size, path, created_at"
_ACTIVE = "status IN ('queued', 'running')"
#: characters an owner ($1) has reserved against the quota: unfinished jobs, and the lines of
#: unfinished storybooks not yet released as jobs (a released line is counted by its job)
RESERVED = (
    f"(SELECT coalesce(sum(characters), 0) FROM jobs WHERE owner = $1 AND {_ACTIVE})"
    " + (SELECT coalesce(sum(l.characters), 0) FROM storybooks b JOIN storybook_lines l"
    " ON l.book_id = b.id AND l.status = 'pending'"
    " WHERE b.owner = $1 AND b.status IN ('queued', 'running'))"
)


def _job(row: Any) -> Job | None:
    if row is None:
        return None
    fields = dict(row)
    return Job(
        **{
            **fields,
            "status": JobStatus(fields["status"]),
            "params": _params_decoder.decode(fields["params"]),
            "request_ids": tuple(fields["request_ids"]),
            "lane": Lane(fields["lane"]),
            "metadata": decode_metadata(fields["metadata"]),
        }
    )


def decode_metadata(value: str | None) -> Metadata | None:
    """A ``jsonb`` column as asyncpg returns it (text), or None."""
    return None if value is None else _metadata_decoder.decode(value)


def encode_metadata(metadata: Metadata | None) -> str | None:
    """For a ``$n::jsonb`` parameter: None stays SQL NULL (not the JSON ``null``)."""
    return None if metadata is None else msgspec.json.encode(metadata).decode()


def _encode_params(params: SpeechParams) -> str:
    return msgspec.json.encode(params).decode()


def next_period(today: dt.date) -> dt.datetime:
    """When the quota month that contains ``today`` ends (UTC midnight of the 1st)."""
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def _user(row: Any) -> User | None:
    if row is None:
        return None
    fields = dict(row)
    refs = fields.pop("pronunciation_dictionaries", None)
    return User(**fields, dictionaries=_refs.decode(refs) if refs else ())


def _audio(row: Any) -> Audio | None:
    return None if row is None else Audio(**dict(row))


async def migrate(conn: Any, migrations: list[tuple[str, str]]) -> None:
    """Apply each migration once, each in its own transaction holding a transaction-scoped
    advisory lock (two processes starting together serialise; nothing to unlock on failure)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for version, text in migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            done = "SELECT 1 FROM schema_migrations WHERE version = $1"
            if await conn.fetchval(done, version):
                continue
            await conn.execute(text)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)


async def ping(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


async def count_users(conn: Any) -> int:
    return await conn.fetchval("SELECT count(*) FROM users")


async def create_user(conn: Any, user_id: str, name: str, role: str, key_hash: bytes) -> User:
    """The user and its first API key, in one statement: the key's hash goes into
    users.api_key_hash, where the previous release looks keys up, and migration 0008's trigger
    makes it the user's first ``api_keys`` row, as it does for a user an old host creates."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (id, name, role, api_key_hash) VALUES ($1, $2, $3, $4)"
            f" RETURNING {_USER}",
            user_id,
            name,
            role,
            key_hash,
        )
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        raise AlreadyExists(f"user name {name!r} is already taken") from exc
    return _user(row)


_USER_COLS = ", ".join(f"u.{c.strip()}" for c in _USER.split(","))


async def user_by_key_hash(conn: Any, key_hash: bytes) -> User | None:
    """The user holding this key, unless the key is revoked."""
    return _user(
        await conn.fetchrow(
            f"SELECT {_USER_COLS} FROM api_keys k JOIN users u ON u.id = k.owner"
            " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            key_hash,
        )
    )


async def list_users(conn: Any) -> list[User]:
    return [
        _user(r)
        for r in await conn.fetch(f"SELECT {_USER} FROM users ORDER BY created_at, name")
    ]


_INSERT_JOB = (
    "INSERT INTO jobs (id, owner, idempotency_key, request_hash, text, voice_id, language,"
    " output_format, characters, params, cache_key, status, cached, audio_id, started_at,"
    " finished_at, lane, metadata, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
    " $10::jsonb, $11, $12, $13, $14, CASE WHEN $13 THEN now() END, CASE WHEN $13 THEN now()"
    " END, $15, $16::jsonb, $17)"
    f" ON CONFLICT DO NOTHING RETURNING {_JOB}"
)
_LINK_AUDIO = (
    "INSERT INTO audio (id, owner, cache_key, format, content_type, duration_s, size, path)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (owner, cache_key)"
    " DO UPDATE SET cache_key = EXCLUDED.cache_key RETURNING id"
)


async def _existing(conn: Any, job: NewJob) -> Job | None:
    """The owner's job with this idempotency key (or id); IdempotencyConflict if it differs."""
    row = None
    if job.idempotency_key is not None:
        row = await conn.fetchrow(
            f"SELECT {_JOB} FROM jobs WHERE owner = $1 AND idempotency_key = $2",
            job.owner,
            job.idempotency_key,
        )
    row = row or await conn.fetchrow(f"SELECT {_JOB} FROM jobs WHERE id = $1", job.id)
    if row is None:
        return None
    existing = _job(row)
    if existing.owner != job.owner or existing.request_hash != job.request_hash:
        raise IdempotencyConflict("this Idempotency-Key was used for a different request")
    return existing


async def check_quota(
    conn: Any, owner: str, required: int, quota: int, what: str = "This job"
) -> None:
    """Used this month + reserved (unfinished jobs, pending lines of unfinished storybooks) +
    ``required`` must fit. Call inside the transaction that then inserts: it takes the owner's
    transaction-scoped advisory lock, so two concurrent submits (jobs or whole books) cannot
    both squeeze in."""
    period, used, reserved = await _quota_locked(conn, owner)
    if used + reserved + required > quota:
        raise _over_quota(what, required, quota, period, used, reserved)


async def _quota_locked(conn: Any, owner: str) -> tuple[dt.datetime, int, int]:
    """The owner's quota lock (transaction-scoped), then (this period, used, reserved)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _QUOTA_LOCK, owner)
    row = await conn.fetchrow(
        f"SELECT {_PERIOD} AS period,"
        " (SELECT coalesce(sum(characters), 0) FROM usage"
        f"   WHERE owner = $1 AND period = {_PERIOD}) AS used,"
        f" {RESERVED} AS reserved",
        owner,
    )
    return row["period"], int(row["used"]), int(row["reserved"])


def _over_quota(what: str, required: int, quota: int, period: dt.datetime, used: int,
                reserved: int) -> QuotaExceeded:
    remaining = max(0, quota - used - reserved)
    reset = next_period(period)
    return QuotaExceeded(
        f"{what} needs {required} characters; {remaining} of your monthly quota"
        f" of {quota} remain (used {used}, reserved by unfinished jobs and books {reserved})."
        f" The quota resets at {reset.isoformat().replace('+00:00', 'Z')}.",
        limit=quota, used=used, reserved=reserved, remaining=remaining,
        required=required, reset_at=reset.isoformat().replace("+00:00", "Z"),
        retry_after=max(1, int((reset - dt.datetime.now(dt.UTC)).total_seconds()) + 1),
    )


async def create_jobs_within_quota(
    conn: Any, owner: str, jobs: list[tuple[NewJob, int]]
) -> list[tuple[Job, bool] | ChorusError | None]:
    """``create_job`` with a quota for several new jobs of one owner, in one transaction under
    the owner's quota lock (as ``check_quota``): an idempotent repeat gets the existing job
    (or ``IdempotencyConflict``), the others are admitted in their order while they fit, each
    counting against the next (``QuotaExceeded`` for one that does not). None for a job left
    to ``create_job`` on its own: a second one with a key already used in this batch, or one
    the ``INSERT`` did not take."""
    out: list[tuple[Job, bool] | ChorusError | None] = [None] * len(jobs)
    async with conn.transaction():
        period, used, reserved = await _quota_locked(conn, owner)
        # what ``_existing`` finds for each: the owner's job with its key, else its id
        rows = await conn.fetch(
            f"SELECT {_JOB} FROM jobs WHERE (owner = $1 AND idempotency_key = ANY($2))"
            " OR id = ANY($3)",
            owner, [job.idempotency_key for job, _ in jobs if job.idempotency_key is not None],
            [job.id for job, _ in jobs],
        )
        found_jobs = [job for row in rows if (job := _job(row)) is not None]
        by_key = {(j.owner, j.idempotency_key): j for j in found_jobs if j.idempotency_key}
        by_id = {j.id: j for j in found_jobs}
        admitted: list[int] = []
        taken: set[str] = set()
        for i, (job, quota) in enumerate(jobs):
            key = job.idempotency_key
            found = by_key.get((owner, key)) if key is not None else None
            if (found := found or by_id.get(job.id)) is not None:
                same = found.owner == job.owner and found.request_hash == job.request_hash
                out[i] = (found, False) if same else (
                    IdempotencyConflict("this Idempotency-Key was used for a different request"))
            elif key is not None and key in taken:
                continue  # on its own, after this batch: it finds the one admitted here
            elif used + reserved + job.characters > quota:
                out[i] = _over_quota("This job", job.characters, quota, period, used, reserved)
            else:
                reserved += job.characters
                taken.update(() if key is None else (key,))
                admitted.append(i)
        if admitted:
            inserted = await conn.fetch(
                _INSERT_JOBS, *_columns([(jobs[i][0], None) for i in admitted])
            )
            found_ids = {row["id"]: _job(row) for row in inserted}
            for i in admitted:
                made = found_ids.get(jobs[i][0].id)
                out[i] = (made, True) if made is not None else None
    return out


async def create_job(
    conn: Any, job: NewJob, quota: int | None, cached: Audio | None, audio_id: str
) -> tuple[Job, bool]:
    """Insert the job (or return the owner's existing one for its idempotency key).

    ``cached``: existing audio with the job's cache key: the job is created succeeded, pointing
    at an audio row of the owner's for that file, and nothing is charged. Otherwise, with a
    ``quota``, the job must fit in it (``QuotaExceeded``)."""
    # the owner's own audio row is linked as it is (audio rows are never deleted): no upsert,
    # which would make every concurrent hit on one clip wait for the others' row lock
    own = cached is not None and cached.owner == job.owner

    async def insert() -> Any:
        linked = cached.id if cached is not None and own else None
        if cached is not None and not own:
            linked = await conn.fetchval(
                _LINK_AUDIO, audio_id, job.owner, cached.cache_key, cached.format,
                cached.content_type, cached.duration_s, cached.size, cached.path,
            )
        return await conn.fetchrow(
            _INSERT_JOB, job.id, job.owner, job.idempotency_key, job.request_hash,
            job.text, job.voice_id, job.language, job.output_format, job.characters,
            _encode_params(job.params), job.cache_key,
            "succeeded" if linked else "queued", linked is not None, linked,
            str(job.lane), encode_metadata(job.metadata), job.request_id,
        )

    for _ in range(3):  # the existing row may be discarded between our INSERT and SELECT
        try:
            if (cached is None and quota is None) or own:
                row = await insert()  # one statement: no transaction needed
            else:
                async with conn.transaction():
                    if cached is None and quota is not None:
                        if (existing := await _existing(conn, job)) is not None:
                            return existing, False
                        await check_quota(conn, job.owner, job.characters, quota)
                    row = await insert()
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != FOREIGN_KEY_VIOLATION:
                raise
            raise InvalidInput("unknown job owner") from exc
        if row is not None:
            return _job(row), True
        if (existing := await _existing(conn, job)) is not None:
            return existing, False
    raise StoreUnavailable("job creation kept racing with a deletion; retry")


_INSERT_JOBS = (
    "INSERT INTO jobs (id, owner, idempotency_key, request_hash, text, voice_id, language,"
    " output_format, characters, params, cache_key, status, lane, metadata, cached, audio_id,"
    " started_at, finished_at, request_id)"
    " SELECT i.id, i.owner, i.idempotency_key, i.request_hash, i.text, i.voice_id, i.language,"
    " i.output_format, i.characters, i.params::jsonb, i.cache_key,"
    " CASE WHEN i.audio_id IS NULL THEN 'queued' ELSE 'succeeded' END, i.lane,"
    " i.metadata::jsonb, i.audio_id IS NOT NULL, i.audio_id,"
    " CASE WHEN i.audio_id IS NOT NULL THEN now() END,"
    " CASE WHEN i.audio_id IS NOT NULL THEN now() END, i.request_id"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::integer[], $10::text[], $11::text[], $12::text[],"
    " $13::text[], $14::text[], $15::text[]) AS i(id, owner, idempotency_key, request_hash,"
    " text, voice_id, language, output_format, characters, params, cache_key, lane, metadata,"
    " audio_id, request_id)"
    f" ON CONFLICT DO NOTHING RETURNING {_JOB}"
)
#: the same, its transaction committed without waiting for the WAL flush (``synchronous_commit``
#: off for this statement's own transaction only: ``set_config(..., is_local => true)``)
_INSERT_JOBS_NO_FLUSH = _INSERT_JOBS.replace(
    " ON CONFLICT DO NOTHING",
    " CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush"
    " ON CONFLICT DO NOTHING",
)


def _columns(jobs: list[tuple[NewJob, str | None]]) -> list[list[Any]]:
    """``_INSERT_JOBS``'s arrays for (job, audio id or None)."""
    columns: list[list[Any]] = [[] for _ in range(15)]
    for job, audio_id in jobs:
        for column, value in zip(columns, (
            job.id, job.owner, job.idempotency_key, job.request_hash, job.text, job.voice_id,
            job.language, job.output_format, job.characters, _encode_params(job.params),
            job.cache_key, str(job.lane), encode_metadata(job.metadata), audio_id,
            job.request_id,
        ), strict=True):
            column.append(value)
    return columns


async def create_jobs(conn: Any, jobs: list[tuple[NewJob, str | None]], flush: bool = True
                      ) -> list[Job | None]:
    """Insert new jobs in one statement: each (job, None) queued (no quota to check), each
    (job, audio id) succeeded from the cache, pointing at that audio row of its owner's. Each
    job as inserted, or None where it was not (its id or idempotency key exists, or its owner
    does not): those go through ``create_job`` one by one. ``flush`` False: the commit does
    not wait for the WAL flush (cache hits answered with their audio only)."""
    try:
        rows = await conn.fetch(_INSERT_JOBS if flush else _INSERT_JOBS_NO_FLUSH,
                                *_columns(jobs))
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != FOREIGN_KEY_VIOLATION:
            raise
        return [None] * len(jobs)  # an unknown owner: each on its own says which
    found = {row["id"]: _job(row) for row in rows}
    return [found.get(job.id) for job, _ in jobs]


async def discard_job(conn: Any, job_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM jobs WHERE id = $1 AND status = 'queued' AND attempts = 0", job_id
    )
    if status != "DELETE 0":
        return True
    return await conn.fetchval("SELECT 1 FROM jobs WHERE id = $1", job_id) is None


async def get_jobs(conn: Any, items: list[tuple[str, str | None]]) -> list[Job | None]:
    """``get_job`` for many (job id, owner or None) at once, in order: one statement."""
    rows = await conn.fetch(
        f"SELECT {_JOB} FROM jobs WHERE id = ANY($1::text[])", [job_id for job_id, _ in items]
    )
    found = {row["id"]: _job(row) for row in rows}
    return [
        job if (job := found.get(job_id)) is not None and owner in (None, job.owner) else None
        for job_id, owner in items
    ]


async def get_job(conn: Any, job_id: str, owner: str | None) -> Job | None:
    return _job(
        await conn.fetchrow(
            f"SELECT {_JOB} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
            job_id,
            owner,
        )
    )


async def list_jobs(
    conn: Any, owner: str, status: str | None, created_after: dt.datetime | None,
    before: tuple[dt.datetime, str] | None, limit: int,
) -> list[Job]:
    """The owner's jobs, newest first (``created_at``, then ``id``, descending); ``before``:
    the (created_at, id) of the last job of the previous page (a keyset cursor)."""
    rows = await conn.fetch(
        f"SELECT {_JOB} FROM jobs WHERE owner = $1"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::timestamptz IS NULL OR created_at > $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::text))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        owner, status, created_after,
        None if before is None else before[0], None if before is None else before[1], limit,
    )
    return [job for row in rows if (job := _job(row)) is not None]


_START = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
    f" started_at = coalesce(started_at, now()) WHERE id = $1 AND {_ACTIVE} RETURNING {_JOB}"
)
_AUDIO_COLS = [c.strip() for c in _AUDIO.split(",")]
_START_CACHED = (
    f"WITH s AS ({_START}) SELECT s.*, "
    + ", ".join(f"a.{c} AS audio_{c}" for c in _AUDIO_COLS)
    + " FROM s LEFT JOIN LATERAL (SELECT * FROM audio WHERE audio.cache_key = $2"
    " ORDER BY audio.owner = s.owner DESC, audio.created_at LIMIT 1) a ON true"
)


async def start_job(conn: Any, job_id: str) -> Job | None:
    row = await conn.fetchrow(_START, job_id)
    return _job(row) if row is not None else await get_job(conn, job_id, None)


async def start_job_cached(
    conn: Any, job_id: str, cache_key: str
) -> tuple[Job | None, Audio | None]:
    """``start_job`` plus the owner's audio for ``cache_key``, in one round trip."""
    row = await conn.fetchrow(_START_CACHED, job_id, cache_key)
    if row is None:
        return await get_job(conn, job_id, None), None
    fields = dict(row)
    audio = {c: fields.pop(f"audio_{c}") for c in _AUDIO_COLS}
    return _job(fields), (Audio(**audio) if audio["id"] is not None else None)


_START_MANY = (
    "WITH i AS (SELECT * FROM unnest($1::text[], $2::text[]) AS i(job_id, job_key)),"
    " s AS (UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1,"
    " started_at = coalesce(jobs.started_at, now()) FROM i"
    f" WHERE jobs.id = i.job_id AND jobs.{_ACTIVE} RETURNING {_JOB_Q}, i.job_key)"
    " SELECT s.*, "
    + ", ".join(f"a.{c} AS audio_{c}" for c in _AUDIO_COLS)
    + " FROM s LEFT JOIN LATERAL (SELECT * FROM audio WHERE audio.cache_key = s.job_key"
    " ORDER BY audio.owner = s.owner DESC, audio.created_at LIMIT 1) a ON true"
)


async def start_jobs_cached(
    conn: Any, items: list[tuple[str, str]]
) -> list[tuple[Job | None, Audio | None]]:
    """``start_job_cached`` for each (job id, cache key), in one statement; the jobs it did
    not start (terminal, unknown) are read as they are."""
    rows = await conn.fetch(
        _START_MANY, [job_id for job_id, _ in items], [key for _, key in items]
    )
    started: dict[str, tuple[Job | None, Audio | None]] = {}
    for row in rows:
        fields = dict(row)
        fields.pop("job_key")
        audio = {c: fields.pop(f"audio_{c}") for c in _AUDIO_COLS}
        started[fields["id"]] = (_job(fields), Audio(**audio) if audio["id"] is not None else None)
    others = [job_id for job_id, _ in items if job_id not in started]
    if others:
        for row in await conn.fetch(f"SELECT {_JOB} FROM jobs WHERE id = ANY($1)", others):
            started[row["id"]] = (_job(row), None)
    return [started.get(job_id, (None, None)) for job_id, _ in items]


_FINISH = (
    "WITH j AS (SELECT id, owner FROM jobs WHERE id = $1 AND status = 'running' FOR UPDATE),"
    " a AS (INSERT INTO audio (id, owner, cache_key, format, content_type, duration_s,"
    " size, path) SELECT $2, $3, $4, $5, $6, $7, $8, $9 FROM j"
    " ON CONFLICT (owner, cache_key) DO UPDATE SET format = EXCLUDED.format,"
    " content_type = EXCLUDED.content_type, duration_s = EXCLUDED.duration_s,"
    " size = EXCLUDED.size, path = EXCLUDED.path RETURNING id),"
    # the usage ledger: one row per job that generated audio (its primary key is the job id)
    " u AS (INSERT INTO usage (job_id, owner, period, characters, provider_cost)"
    f" SELECT j.id, j.owner, {_PERIOD}, $12, $11 FROM j WHERE $12 > 0"
    " ON CONFLICT (job_id) DO NOTHING),"
    # the clip's timings, beside the audio row (by cache key, as its file): new audio only;
    # JSON text (migration 0007: never queried inside, so not parsed into jsonb)
    " l AS (INSERT INTO audio_alignments (cache_key, alignment) SELECT $4, $13::text FROM j"
    " WHERE $13::text IS NOT NULL ON CONFLICT (cache_key) DO UPDATE"
    " SET alignment = EXCLUDED.alignment)"
    " UPDATE jobs SET status = 'succeeded', audio_id = a.id, finished_at = now(),"
    " error_code = NULL, error_message = NULL, request_ids = $10,"
    " character_cost = coalesce($11, jobs.character_cost)"
    f" FROM a WHERE jobs.id = $1 RETURNING {_JOB_Q}"
)


async def finish_job(conn: Any, job_id: str, audio_id: str, audio: NewAudio) -> Job | None:
    """One statement: lock the job if it is running, upsert its audio row, charge the owner
    (when the audio was generated for it), mark it succeeded. A job that is unknown or already
    settled is returned as it is (idempotent, and never charged twice)."""
    row = await conn.fetchrow(_FINISH, *_finish_args(job_id, audio_id, audio))
    return _job(row) if row is not None else await get_job(conn, job_id, None)


async def finish_jobs(
    conn: Any, batch: list[tuple[str, str, NewAudio]]
) -> list[Job | None]:
    """``finish_job`` for each (job id, audio id, audio): one pipelined, atomic
    ``executemany``, then the jobs as they now are (None: unknown)."""
    await conn.executemany(_FINISH, [_finish_args(*item) for item in batch])
    ids = [job_id for job_id, _, _ in batch]
    rows = await conn.fetch(f"SELECT {_JOB} FROM jobs WHERE id = ANY($1)", ids)
    jobs = {row["id"]: _job(row) for row in rows}
    return [jobs.get(job_id) for job_id in ids]


def _finish_args(job_id: str, audio_id: str, audio: NewAudio) -> tuple[Any, ...]:
    return (
        job_id, audio_id, audio.owner, audio.cache_key, audio.format, audio.content_type,
        audio.duration_s, audio.size, audio.path, list(audio.request_ids),
        audio.character_cost, audio.charge,
        None if audio.alignment is None else msgspec.json.encode(audio.alignment).decode(),
    )


_alignment_decoder = msgspec.json.Decoder(Alignment)


async def get_alignment(conn: Any, cache_key: str) -> Alignment | None:
    """The timings stored with the audio of ``cache_key`` (None: none were stored)."""
    raw = await conn.fetchval(
        "SELECT alignment FROM audio_alignments WHERE cache_key = $1", cache_key
    )
    return None if raw is None else _alignment_decoder.decode(raw)


async def fail_job(conn: Any, job_id: str, status: str, code: str, message: str) -> Job | None:
    row = await conn.fetchrow(
        "UPDATE jobs SET status = $2, error_code = $3, error_message = $4, finished_at = now()"
        f" WHERE id = $1 AND {_ACTIVE} RETURNING {_JOB}",
        job_id,
        status,
        code,
        message,
    )
    return _job(row) if row is not None else await get_job(conn, job_id, None)


async def note_error(conn: Any, job_id: str, code: str, message: str) -> None:
    await conn.execute(
        f"UPDATE jobs SET error_code = $2, error_message = $3 WHERE id = $1 AND {_ACTIVE}",
        job_id,
        code,
        message,
    )


async def cancel_job(conn: Any, job_id: str, owner: str | None) -> Job | None:
    """Compare-and-set queued -> cancelled: a worker that reads its entry later finds it ended
    (``start_job`` returns it unchanged) and only acks it; it reserves no quota any more.
    (The TTSActor calls the provider before a job's start is known only in the interactive
    lane: cancelling an interactive job can still cost that one provider call, never a
    charge.) The job as it now is; None if unknown (or not the owner's)."""
    row = await conn.fetchrow(
        "UPDATE jobs SET status = 'cancelled', finished_at = now()"
        " WHERE id = $1 AND status = 'queued' AND ($2::text IS NULL OR owner = $2)"
        f" RETURNING {_JOB}",
        job_id,
        owner,
    )
    return _job(row) if row is not None else await get_job(conn, job_id, owner)


async def requeue_job(conn: Any, job_id: str) -> Job | None:
    row = await conn.fetchrow(
        "UPDATE jobs SET status = 'queued', finished_at = NULL"
        f" WHERE id = $1 AND status IN ('failed', 'dead') RETURNING {_JOB}",
        job_id,
    )
    return _job(row) if row is not None else await get_job(conn, job_id, None)


async def find_audio(conn: Any, owner: str, cache_key: str) -> Audio | None:
    """Audio with ``cache_key``, the owner's own row first, else anyone's (the file is shared;
    the cache key includes the owner when the cache is per owner)."""
    return _audio(
        await conn.fetchrow(
            f"SELECT {_AUDIO} FROM audio WHERE cache_key = $2"
            " ORDER BY owner = $1 DESC, created_at LIMIT 1",
            owner,
            cache_key,
        )
    )


_FIND_AUDIOS = (
    "SELECT DISTINCT ON (r.i) r.i AS wanted, "
    + ", ".join(f"a.{c}" for c in _AUDIO_COLS)
    + " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(owner, key, i)"
    " JOIN audio a ON a.cache_key = r.key"
    " ORDER BY r.i, a.owner = r.owner DESC, a.created_at"
)


async def find_audios(conn: Any, items: list[tuple[str, str]]) -> list[Audio | None]:
    """``find_audio`` for many (owner, cache key) at once, in order: one statement."""
    rows = await conn.fetch(
        _FIND_AUDIOS, [owner for owner, _ in items], [key for _, key in items]
    )
    found = {row["wanted"]: Audio(**{c: row[c] for c in _AUDIO_COLS}) for row in rows}
    return [found.get(i) for i in range(1, len(items) + 1)]


async def set_quota(conn: Any, name: str, quota: int | None) -> User:
    row = await conn.fetchrow(
        f"UPDATE users SET monthly_quota = $2 WHERE name = $1 RETURNING {_USER}", name, quota
    )
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return _user(row)


async def usage(conn: Any, owner: str) -> dict[str, Any]:
    """This month's usage of one user: charged characters, reserved by unfinished jobs and by
    the pending lines of unfinished storybooks."""
    row = await conn.fetchrow(
        f"SELECT {_PERIOD} AS period, u.monthly_quota AS quota,"
        " (SELECT coalesce(sum(characters), 0) FROM usage"
        f"   WHERE owner = $1 AND period = {_PERIOD}) AS used,"
        " (SELECT count(*) FROM usage"
        f"   WHERE owner = $1 AND period = {_PERIOD}) AS jobs,"
        f" {RESERVED} AS reserved"
        " FROM users u WHERE u.id = $1",
        owner,
    )
    if row is None:
        raise NotFound("unknown user")
    return dict(row)


async def get_audio(conn: Any, audio_id: str, owner: str | None) -> Audio | None:
    return _audio(
        await conn.fetchrow(
            f"SELECT {_AUDIO} FROM audio WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
            audio_id,
            owner,
        )
    )


async def get_audios(conn: Any, audio_ids: list[str], owner: str) -> list[Audio]:
    """The owner's audio rows among ``audio_ids`` (one statement; order not kept)."""
    rows = await conn.fetch(
        f"SELECT {_AUDIO} FROM audio WHERE id = ANY($1::text[]) AND owner = $2",
        audio_ids, owner,
    )
    return [a for a in (_audio(r) for r in rows) if a is not None]


async def orphan_candidates(conn: Any, min_age_s: float, max_age_s: float, limit: int
                            ) -> list[str]:
    """Jobs never started, queued for between ``min_age_s`` and ``max_age_s``, oldest first:
    those whose enqueue may have failed without the row being discarded."""
    rows = await conn.fetch(
        "SELECT id FROM jobs WHERE status = 'queued' AND attempts = 0"
        " AND created_at < now() - make_interval(secs => $1)"
        " AND created_at > now() - make_interval(secs => $2)"
        " ORDER BY created_at LIMIT $3",
        min_age_s,
        max_age_s,
        limit,
    )
    return [r["id"] for r in rows]

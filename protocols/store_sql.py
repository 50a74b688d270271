"""The SQL behind PgStore (``protocols/store.py``): asyncio-flavoured functions of an asyncpg
connection, run on the store's trio-asyncio loop. Never call them directly; this module imports
neither asyncio nor asyncpg (errors are recognised by SQLSTATE).
"""

from __future__ import annotations

from typing import Any

from protocols.errors import AlreadyExists, IdempotencyConflict, InvalidInput, StoreUnavailable
from protocols.messages import Audio, Job, JobStatus, NewAudio, NewJob, User

UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"

_MIGRATION_LOCK = 0x63686F72_7573  # pg_advisory_lock key: "chorus"
_USER = "id, name, role, created_at"
_JOB = (
    "id, owner, status, text, voice_id, language, output_format, idempotency_key, request_hash,"
    " attempts, characters, error_code, error_message, audio_id, created_at, started_at,"
    " finished_at"
)
_JOB_Q = ", ".join(f"jobs.{c.strip()}" for c in _JOB.split(","))  # qualified, for joins
_AUDIO = "id, owner, cache_key, format, content_type, duration_s, size, path, created_at"
_ACTIVE = "status IN ('queued', 'running')"


def _job(row: Any) -> Job | None:
    if row is None:
        return None
    fields = dict(row)
    return Job(**{**fields, "status": JobStatus(fields["status"])})


def _user(row: Any) -> User | None:
    return None if row is None else User(**dict(row))


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
    try:
        row = await conn.fetchrow(
            f"INSERT INTO users (id, name, role, api_key_hash) VALUES ($1, $2, $3, $4)"
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
    return User(**dict(row))


async def user_by_key_hash(conn: Any, key_hash: bytes) -> User | None:
    return _user(
        await conn.fetchrow(f"SELECT {_USER} FROM users WHERE api_key_hash = $1", key_hash)
    )


async def list_users(conn: Any) -> list[User]:
    return [
        User(**dict(r))
        for r in await conn.fetch(f"SELECT {_USER} FROM users ORDER BY created_at, name")
    ]


async def create_job(conn: Any, job: NewJob) -> tuple[Job, bool]:
    for _ in range(3):  # the existing row may be discarded between our INSERT and SELECT
        try:
            row = await conn.fetchrow(
                "INSERT INTO jobs (id, owner, idempotency_key, request_hash, text, voice_id,"
                " language, output_format, characters) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                f" ON CONFLICT DO NOTHING RETURNING {_JOB}",
                job.id,
                job.owner,
                job.idempotency_key,
                job.request_hash,
                job.text,
                job.voice_id,
                job.language,
                job.output_format,
                job.characters,
            )
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != FOREIGN_KEY_VIOLATION:
                raise
            raise InvalidInput("unknown job owner") from exc
        if row is not None:
            return _job(row), True
        row = None
        if job.idempotency_key is not None:
            row = await conn.fetchrow(
                f"SELECT {_JOB} FROM jobs WHERE owner = $1 AND idempotency_key = $2",
                job.owner,
                job.idempotency_key,
            )
        row = row or await conn.fetchrow(f"SELECT {_JOB} FROM jobs WHERE id = $1", job.id)
        if row is not None:
            existing = _job(row)
            if existing.owner != job.owner or existing.request_hash != job.request_hash:
                raise IdempotencyConflict("this Idempotency-Key was used for a different request")
            return existing, False
    raise StoreUnavailable("job creation kept racing with a deletion; retry")


async def discard_job(conn: Any, job_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM jobs WHERE id = $1 AND status = 'queued' AND attempts = 0", job_id
    )
    if status != "DELETE 0":
        return True
    return await conn.fetchval("SELECT 1 FROM jobs WHERE id = $1", job_id) is None


async def get_job(conn: Any, job_id: str, owner: str | None) -> Job | None:
    return _job(
        await conn.fetchrow(
            f"SELECT {_JOB} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
            job_id,
            owner,
        )
    )


_START = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
    f" started_at = coalesce(started_at, now()) WHERE id = $1 AND {_ACTIVE} RETURNING {_JOB}"
)
_AUDIO_COLS = [c.strip() for c in _AUDIO.split(",")]
_START_CACHED = (
    f"WITH s AS ({_START}) SELECT s.*, "
    + ", ".join(f"a.{c} AS audio_{c}" for c in _AUDIO_COLS)
    + " FROM s LEFT JOIN audio a ON a.owner = s.owner AND a.cache_key = $2"
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
    job = Job(**{**fields, "status": JobStatus(fields["status"])})
    return job, (Audio(**audio) if audio["id"] is not None else None)


async def finish_job(conn: Any, job_id: str, audio_id: str, audio: NewAudio) -> Job | None:
    """One statement: lock the job if it is running, upsert its audio row, mark it succeeded.
    A job that is unknown or already settled is returned as it is (idempotent)."""
    row = await conn.fetchrow(
        "WITH j AS (SELECT id FROM jobs WHERE id = $1 AND status = 'running' FOR UPDATE),"
        " a AS (INSERT INTO audio (id, owner, cache_key, format, content_type, duration_s,"
        " size, path) SELECT $2, $3, $4, $5, $6, $7, $8, $9 FROM j"
        " ON CONFLICT (owner, cache_key) DO UPDATE SET format = EXCLUDED.format,"
        " content_type = EXCLUDED.content_type, duration_s = EXCLUDED.duration_s,"
        " size = EXCLUDED.size, path = EXCLUDED.path RETURNING id)"
        " UPDATE jobs SET status = 'succeeded', audio_id = a.id, finished_at = now(),"
        f" error_code = NULL, error_message = NULL FROM a WHERE jobs.id = $1 RETURNING {_JOB_Q}",
        job_id,
        audio_id,
        audio.owner,
        audio.cache_key,
        audio.format,
        audio.content_type,
        audio.duration_s,
        audio.size,
        audio.path,
    )
    return _job(row) if row is not None else await get_job(conn, job_id, None)


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


async def requeue_job(conn: Any, job_id: str) -> Job | None:
    row = await conn.fetchrow(
        "UPDATE jobs SET status = 'queued', finished_at = NULL"
        f" WHERE id = $1 AND status IN ('failed', 'dead') RETURNING {_JOB}",
        job_id,
    )
    return _job(row) if row is not None else await get_job(conn, job_id, None)


async def find_audio(conn: Any, owner: str, cache_key: str) -> Audio | None:
    return _audio(
        await conn.fetchrow(
            f"SELECT {_AUDIO} FROM audio WHERE owner = $1 AND cache_key = $2", owner, cache_key
        )
    )


async def get_audio(conn: Any, audio_id: str, owner: str | None) -> Audio | None:
    return _audio(
        await conn.fetchrow(
            f"SELECT {_AUDIO} FROM audio WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
            audio_id,
            owner,
        )
    )

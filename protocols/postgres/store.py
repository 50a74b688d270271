"""PgStore: the JobStore on Postgres (with the VoiceStore, StorybookStore and DictionaryStore
mixins), asyncpg running on one trio-asyncio loop.

The only module that imports asyncio or asyncpg. ``PgStore.open(url, timeout=...)`` opens a
trio-asyncio loop, an asyncpg pool inside it and applies ``protocols/migrations/*.sql`` (each once,
in a transaction, under an advisory lock). Every method may be called from any trio task while
the context is open: calls carry the loop explicitly and run under ``trio.fail_after(timeout)``.
Connection trouble and timeouts raise ``StoreUnavailable``; other database errors a typed
``ChorusError``. A cancelled call has an unknown outcome, so every write here is idempotent.

While the database is down, asyncpg's pool retries its connection floor with a warning and
a traceback each time, and orphaned asyncio tasks report their connection errors: ``QuietOutages``
makes each of those one line (an unexpected error type still shows its traceback, once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import outcome
import trio
import trio_asyncio

from protocols.embedded.servers import with_database
from protocols.errors import ChorusError, ConfigError, InvalidInput, NotFound, StoreUnavailable
from protocols.messages import Alignment, Audio, Job, JobStatus, NewAudio, NewJob, Usage, User
from protocols.postgres import jobs_sql as q
from protocols.postgres import ops_sql
from protocols.postgres.accounts import AccountStoreMixin, hash_api_key, new_api_key
from protocols.postgres.coalesce import Coalescer
from protocols.postgres.dictionaries import DictionaryStoreMixin
from protocols.postgres.storybooks import StorybookStoreMixin
from protocols.postgres.voices import VoiceStoreMixin

T = TypeVar("T")

log = logging.getLogger("chorus.store")

_UNAVAILABLE = (
    OSError,  # includes TimeoutError (asyncpg command_timeout) and ConnectionError
    asyncpg.InterfaceError,  # connection closed, pool closing
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, starting up, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.InternalClientError,  # protocol state broken by a dropped connection
)
#: the connection died under us (server restart, pg_terminate_backend): every store operation
#: is idempotent, so it is tried once more on a fresh connection
_RECONNECT = (
    ConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
)
_BAD_CONFIG = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # bad user or password
    asyncpg.exceptions.InvalidCatalogNameError,  # no such database
)
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _translate(exc: Exception) -> ChorusError | None:
    """A typed error for a client-library exception (never with the URL in it), else None."""
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return ConfigError(f"invalid database URL or options ({type(exc).__name__})")
    if isinstance(exc, _BAD_CONFIG):
        return ConfigError(f"database rejected the connection ({type(exc).__name__})")
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"database unavailable ({type(exc).__name__})")
    if isinstance(exc, asyncpg.PostgresError):
        return ChorusError(f"database error {exc.sqlstate} ({type(exc).__name__})")
    return None


class QuietOutages(logging.Filter):
    """One concise line, no traceback, for a record carrying a connection error (the database
    is down or restarting: asyncpg's pool logs one on every reconnect attempt). A record with
    any other exception keeps its traceback the first time its logger reports that type, and
    is one line, pointing back to it, after that."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, type]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        outage = isinstance(exc, _UNAVAILABLE)
        if not outage and (record.name, type(exc)) not in self._seen:
            self._seen.add((record.name, type(exc)))
            return True
        text = " ".join(str(exc).split())[:200]
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        note = "" if outage else "; traceback logged before"
        record.msg = f"{record.getMessage()} ({what}{note})"
        record.args = None
        record.exc_info = record.exc_text = None
        return True


_QUIET = QuietOutages()
for _name in ("asyncpg.pool", log.name):
    logging.getLogger(_name).addFilter(_QUIET)


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("protocols.postgres").joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def _dsn(url: object) -> str:
    reveal = getattr(url, "reveal", None)  # settings.Secret prints as *** otherwise
    return reveal() if callable(reveal) else str(url)


# --- asyncio side: these run as asyncio tasks on the store's loop --------------------------------


async def _with_conn(pool: asyncpg.Pool, fn: Callable[..., Awaitable[T]], args: tuple) -> T:
    try:
        async with pool.acquire() as conn:
            return await fn(conn, *args)
    except _RECONNECT:
        async with pool.acquire() as conn:
            return await fn(conn, *args)


async def _create_pool(dsn: str, limit_s: float, max_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        timeout=limit_s,
        command_timeout=limit_s,
        # the store keeps no session state (no LISTEN, advisory locks are transaction-scoped,
        # SET is never used): skip the reset round trip on every release; asyncpg still rolls
        # back a transaction left open
        reset=_no_reset,
        # an idle-connection timer per release would pile up cancelled timers in trio-asyncio
        max_inactive_connection_lifetime=0,
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def _close_pool(pool: asyncpg.Pool, limit_s: float) -> None:
    try:
        await asyncio.wait_for(pool.close(), limit_s)
    except Exception:
        pool.terminate()


async def _run_once(dsn: str, statement: str, limit_s: float) -> None:
    conn = await asyncpg.connect(dsn, timeout=limit_s, command_timeout=limit_s)
    try:
        await conn.execute(statement)
    finally:
        await conn.close(timeout=limit_s)


# --- trio side -----------------------------------------------------------------------------------


@asynccontextmanager
async def _open_loop() -> AsyncIterator[Any]:
    """``trio_asyncio.open_loop()`` without the two exception groups its nested nurseries wrap
    around whatever leaves the body: callers see the plain exception (their own groups intact)."""
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(_log_loop_error)
            yield loop
    except BaseExceptionGroup as group:
        inner: BaseException = group
        for _ in range(2):  # tasks_nursery, then loop_nursery (a forwarded Cancelled: just one)
            if isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
                inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from inner.__cause__


def _log_loop_error(loop: Any, context: dict[str, Any]) -> None:
    """Errors of asyncio tasks nobody awaits: log them, as plain asyncio does. trio-asyncio's
    default handler raises them into the loop's nursery, which would end the store: asyncpg's
    pool releases a connection in a shielded task, and when the call was cancelled (our
    timeout) and the release's reset then times out too, that task's error is orphaned; the
    pool has already terminated the connection by then."""
    message = context.get("message") or "unhandled error"
    log.warning("asyncio: %s", message, exc_info=context.get("exception"))


async def _on_loop(loop: Any, limit_s: float, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run asyncio ``fn(*args)`` on ``loop`` from any trio task, bounded and translated."""
    try:
        with trio.fail_after(limit_s):
            return await trio_asyncio.aio_as_trio(fn, loop=loop)(*args)
    except trio.TooSlowError as exc:
        raise StoreUnavailable(f"database did not answer within {limit_s:g} s") from exc
    except ChorusError:
        raise
    except Exception as exc:
        if (err := _translate(exc)) is None:
            raise
        raise err from exc


class PgStore(VoiceStoreMixin, StorybookStoreMixin, DictionaryStoreMixin, AccountStoreMixin):
    """The JobStore, VoiceStore, StorybookStore and DictionaryStore (``protocols.ports``) on
    Postgres; ``PgStore.open``."""

    def __init__(self, loop: Any, pool: asyncpg.Pool, timeout: float) -> None:
        self._loop, self._pool, self._timeout = loop, pool, timeout
        self._closed = False
        #: concurrent submits without quota, or answered from the owner's cached audio,
        #: inserted together (group commit)
        self._create_many: Coalescer[tuple[NewJob, str | None], Job | None] = Coalescer(
            self._create_batch
        )
        #: the same for hits answered with their audio, committed without waiting for the
        #: WAL flush (``create_job(durable=False)``)
        self._create_hits: Coalescer[tuple[NewJob, str | None], Job | None] = Coalescer(
            self._create_hits_batch
        )
        self._find_many: Coalescer[tuple[str, str], Audio | None] = Coalescer(self._find_batch)
        #: concurrent submits with a quota: one transaction per owner under its quota lock
        self._create_within: Coalescer[tuple[NewJob, int], tuple[Job, bool] | None] = Coalescer(
            self._create_within_batch
        )
        #: concurrent reads of jobs by id (``GET /v1/jobs/{id}``, the actors) share one SELECT
        self._get_many: Coalescer[tuple[str, str | None], Job | None] = Coalescer(
            self._get_batch
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        timeout: float,  # noqa: ASYNC109 - bounds each call, not the whole context
        max_size: int = 10,
    ) -> AsyncIterator[PgStore]:
        """Open the loop and pool, migrate, yield the store; close everything on exit.
        ``url`` may be a ``settings.Secret``. Raises StoreUnavailable / ConfigError."""
        dsn = _dsn(url)
        async with _open_loop() as loop:
            try:
                pool = await _on_loop(loop, timeout, _create_pool, dsn, timeout, max_size)
            except ValueError:  # a malformed URL: its text may hold the password
                raise ConfigError("invalid database URL") from None
            store = cls(loop, pool, timeout)
            try:
                await store._call(q.migrate, _migrations())
                yield store
            finally:
                store._closed = True
                with trio.move_on_after(timeout + 1) as scope:
                    scope.shield = True
                    await trio_asyncio.aio_as_trio(_close_pool, loop=loop)(pool, timeout)

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        return await _on_loop(self._loop, self._timeout, _with_conn, self._pool, fn, args)

    async def ping(self) -> None:
        await self._call(q.ping)

    # users

    async def count_users(self) -> int:
        return await self._call(q.count_users)

    async def create_user(self, name: str, *, admin: bool = False) -> tuple[User, str]:
        name = name.strip()
        if not name:
            raise InvalidInput("user name is empty")
        key = new_api_key()
        role = "admin" if admin else "user"
        user = await self._call(q.create_user, str(uuid.uuid4()), name, role, hash_api_key(key))
        return user, key

    async def authenticate(self, api_key: str) -> User | None:
        if not api_key:
            return None
        return await self._call(q.user_by_key_hash, hash_api_key(api_key))

    async def list_users(self) -> list[User]:
        return await self._call(q.list_users)

    async def set_quota(self, name: str, quota: int | None) -> User:
        if quota is not None and quota < 0:
            raise InvalidInput("a quota cannot be negative")
        return await self._call(q.set_quota, name, quota)

    async def usage(self, owner: str) -> Usage:
        row = await self._call(q.usage, owner)
        return Usage(
            period_start=row["period"].isoformat(),
            resets_at=q.next_period(row["period"]).isoformat().replace("+00:00", "Z"),
            limit=row["quota"],
            used=int(row["used"]),
            reserved=int(row["reserved"]),
            jobs_charged=int(row["jobs"]),
        )

    async def job_figures(self, window_s: float) -> list[tuple[str, int, int]]:
        """(status, jobs, of which cached) over the last ``window_s`` seconds, all users."""
        return await self._call(ops_sql.job_figures, window_s)

    # jobs

    async def create_job(
        self, job: NewJob, *, quota: int | None = None, cached: Audio | None = None,
        durable: bool = True,
    ) -> tuple[Job, bool]:
        own = cached is not None and cached.owner == job.owner  # a hit: nothing to charge
        if own and not durable:  # a history record: no wait for the log flush
            assert cached is not None
            created = await self._create_hits((job, cached.id))
            if created is not None:
                return created, True
        elif (quota is None and cached is None) or own:
            created = await self._create_many((job, cached.id if cached is not None else None))
            if created is not None:
                return created, True
            # not inserted (its idempotency key is taken, or the batch failed): on its own
        elif quota is not None and cached is None:
            decided = await self._create_within((job, quota))
            if decided is not None:
                return decided
            # left to itself (a key repeated within the batch, or the batch failed)
        return await self._call(q.create_job, job, quota, cached, "aud_" + uuid.uuid4().hex)

    async def _create_within_batch(
        self, items: list[tuple[NewJob, int]]
    ) -> list[outcome.Outcome[tuple[Job, bool] | None]]:
        """Jobs with a quota, one transaction per owner (owners side by side); None for each
        one left to ``create_job`` on its own."""
        by_owner: dict[str, list[int]] = {}
        for i, (job, _) in enumerate(items):
            by_owner.setdefault(job.owner, []).append(i)
        results: list[outcome.Outcome[tuple[Job, bool] | None]] = [outcome.Value(None)] * len(
            items
        )

        async def one_owner(owner: str, indexes: list[int]) -> None:
            try:
                decided = await self._call(
                    q.create_jobs_within_quota, owner, [items[i] for i in indexes]
                )
            except ChorusError:  # e.g. an unknown owner: each goes on its own, and says why
                return
            for i, result in zip(indexes, decided, strict=True):
                results[i] = (outcome.Error(result) if isinstance(result, ChorusError)
                              else outcome.Value(result))

        async with trio.open_nursery() as nursery:
            for owner, indexes in by_owner.items():
                nursery.start_soon(one_owner, owner, indexes)
        return results

    async def _create_batch(
        self, jobs: list[tuple[NewJob, str | None]]
    ) -> list[outcome.Outcome[Job | None]]:
        """Insert plain new jobs and cache hits in one round trip; None for each one that
        was not."""
        try:
            created = await self._call(q.create_jobs, jobs)
        except ChorusError:  # e.g. an unknown owner fails the batch: each goes on its own
            created = [None] * len(jobs)
        return [outcome.Value(job) for job in created]

    async def _create_hits_batch(
        self, jobs: list[tuple[NewJob, str | None]]
    ) -> list[outcome.Outcome[Job | None]]:
        try:
            created = await self._call(q.create_jobs, jobs, False)
        except ChorusError:
            created = [None] * len(jobs)
        return [outcome.Value(job) for job in created]

    async def discard_job(self, job_id: str) -> bool:
        return await self._call(q.discard_job, job_id)

    async def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        return await self._get_many((job_id, owner))

    async def _get_batch(
        self, items: list[tuple[str, str | None]]
    ) -> list[outcome.Outcome[Job | None]]:
        if len(items) == 1:
            return [outcome.Value(await self._call(q.get_job, *items[0]))]
        return [outcome.Value(job) for job in await self._call(q.get_jobs, items)]

    async def list_jobs(
        self, owner: str, *, status: JobStatus | None = None,
        created_after: dt.datetime | None = None,
        before: tuple[dt.datetime, str] | None = None, limit: int = 50,
    ) -> list[Job]:
        return await self._call(
            q.list_jobs, owner, None if status is None else status.value, created_after,
            before, limit,
        )

    async def start_job(self, job_id: str) -> Job | None:
        return await self._call(q.start_job, job_id)

    async def start_job_cached(
        self, job_id: str, cache_key: str
    ) -> tuple[Job | None, Audio | None]:
        return await self._call(q.start_job_cached, job_id, cache_key)

    async def start_jobs_cached(
        self, items: Sequence[tuple[str, str]]
    ) -> list[tuple[Job | None, Audio | None]]:
        if not items:
            return []
        return await self._call(q.start_jobs_cached, list(items))

    async def finish_job(self, job_id: str, audio: NewAudio) -> Job:
        job = await self._call(q.finish_job, job_id, "aud_" + uuid.uuid4().hex, audio)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    async def finish_jobs(
        self, items: Sequence[tuple[str, NewAudio]]
    ) -> list[Job | ChorusError]:
        """One transaction for the whole batch (rows locked in a fixed order, so concurrent
        batches cannot deadlock each other); when it fails, each job is tried on its own, so
        one bad job fails only itself. An unavailable store fails them all at once."""
        if not items:
            return []
        batch = sorted(
            ((job_id, "aud_" + uuid.uuid4().hex, audio) for job_id, audio in items),
            key=lambda item: (item[2].owner, item[2].cache_key, item[0]),
        )
        try:
            rows = await self._call(q.finish_jobs, batch)
        except StoreUnavailable as exc:
            return [exc] * len(items)
        except ChorusError:
            if len(items) == 1:
                rows = [None]
            else:
                return [await self._finish_one(job_id, audio) for job_id, audio in items]
        found = {job_id: row for (job_id, _, _), row in zip(batch, rows, strict=True)}
        return [
            job if (job := found[job_id]) is not None
            else await self._finish_one(job_id, audio)
            for job_id, audio in items
        ]

    async def _finish_one(self, job_id: str, audio: NewAudio) -> Job | ChorusError:
        try:
            return await self.finish_job(job_id, audio)
        except ChorusError as exc:
            return exc

    async def fail_job(
        self, job_id: str, code: str, message: str, *, status: JobStatus = JobStatus.failed
    ) -> Job | None:
        if status not in (JobStatus.failed, JobStatus.dead):
            raise InvalidInput(f"fail_job cannot set status {status}")
        return await self._call(q.fail_job, job_id, str(status), code, message[:2000])

    async def note_error(self, job_id: str, code: str, message: str) -> None:
        await self._call(q.note_error, job_id, code, message[:2000])

    async def cancel_job(self, job_id: str, owner: str | None = None) -> Job | None:
        return await self._call(q.cancel_job, job_id, owner)

    async def requeue_job(self, job_id: str) -> Job | None:
        return await self._call(q.requeue_job, job_id)

    async def orphan_candidates(self, min_age_s: float, max_age_s: float, limit: int = 500
                                ) -> list[str]:
        return await self._call(q.orphan_candidates, min_age_s, max_age_s, limit)

    # audio

    async def find_audio(self, owner: str, cache_key: str) -> Audio | None:
        """Concurrent look-ups (every submit makes one) share one statement."""
        return await self._find_many((owner, cache_key))

    async def _find_batch(
        self, items: list[tuple[str, str]]
    ) -> list[outcome.Outcome[Audio | None]]:
        if len(items) == 1:
            return [outcome.Value(await self._call(q.find_audio, *items[0]))]
        return [outcome.Value(a) for a in await self._call(q.find_audios, items)]

    async def get_audio(self, audio_id: str, owner: str | None = None) -> Audio | None:
        return await self._call(q.get_audio, audio_id, owner)

    async def get_audios(self, audio_ids: Sequence[str], owner: str) -> list[Audio]:
        return await self._call(q.get_audios, list(audio_ids), owner)

    async def alignment_of(self, audio: Audio) -> Alignment | None:
        """The timings stored with ``audio`` (by its cache key); None: none were."""
        return await self._call(q.get_alignment, audio.cache_key)


# --- administration (tests, doctor) --------------------------------------------------------------


async def _admin(admin_url: str, statement: str, limit_s: float) -> None:
    async with _open_loop() as loop:
        await _on_loop(loop, limit_s, _run_once, _dsn(admin_url), statement, limit_s)


async def create_database(admin_url: str, name: str, *, timeout: float) -> str:  # noqa: ASYNC109
    """CREATE DATABASE ``name`` through ``admin_url``; returns the new database's URL."""
    if not _DB_NAME.match(name):
        raise InvalidInput(f"bad database name {name!r}")
    await _admin(admin_url, f"CREATE DATABASE {name}", timeout)
    return with_database(_dsn(admin_url), name)


async def drop_database(admin_url: str, name: str, *, timeout: float) -> None:  # noqa: ASYNC109
    """DROP DATABASE ``name`` (if it exists), closing its connections."""
    if not _DB_NAME.match(name):
        raise InvalidInput(f"bad database name {name!r}")
    await _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", timeout)

"""In-memory fakes of the Protocols in ``protocols/ports.py``, for unit tests (the fake
``SpeechProvider`` ships: ``protocols/providers/fake.py``; ``TEST_VOICES`` are its voices here).

They keep the documented semantics of the real adapters: idempotency by key (scoped per owner)
with ``IdempotencyConflict`` on a different request, compare-and-set job transitions, audio
upserted once per (owner, cache key), owner isolation (another user's rows are ``None``),
``StoreUnavailable`` when told to be down, and a failed call (a bare ``ChorusError``, a 500) when
a text holding U+0000 is sent, which Postgres refuses. Every method is a trio checkpoint, like a
real network call.

Test seams (public attributes): ``FakeJobStore.down``, ``FakeJobStore.calls``,
``RecordingEvents.events`` (what was published, in order).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Sequence

import msgspec
import trio

from protocols.errors import (
    ChorusError,
    IdempotencyConflict,
    NotFound,
    QuotaExceeded,
    StoreUnavailable,
)
from protocols.events import Event, EventKind
from protocols.messages import (
    Alignment,
    Audio,
    Job,
    JobStatus,
    NewAudio,
    NewJob,
    Usage,
    User,
    VoiceInfo,
)
from tests.support.fake_voices import FakeVoiceStoreMixin

replace = msgspec.structs.replace


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class FakeJobStore(FakeVoiceStoreMixin):
    """``JobStore`` in memory."""

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.clock = clock
        self.down = False  # True: every call raises StoreUnavailable
        self.calls: collections.Counter[str] = collections.Counter()
        self.alignments: dict[str, Alignment] = {}  # by cache key, as Postgres keeps them
        self.users: dict[str, User] = {}
        self.keys: dict[str, str] = {}  # sha256(api key) -> user id
        self.jobs: dict[str, Job] = {}
        self.by_idempotency_key: dict[tuple[str, str], str] = {}  # (owner, key) -> job id
        self.audio: dict[str, Audio] = {}
        self.audio_by_cache_key: dict[tuple[str, str], str] = {}  # (owner, cache key) -> id
        self.charged: dict[tuple[str, str], int] = {}  # (owner, job id) -> characters
        self.not_durable: list[str] = []  # jobs created with ``durable=False``

    async def _enter(self, method: str, *sent: object) -> None:
        """One call: a checkpoint, counted; ``sent`` is what the call hands the database. Like
        Postgres, a text holding U+0000 fails the call (SQLSTATE 22021, a bare ChorusError)."""
        await trio.lowlevel.checkpoint()
        self.calls[method] += 1
        if self.down:
            raise StoreUnavailable("fake store is down")
        if _holds_nul(msgspec.to_builtins(sent)):
            raise ChorusError("database error 22021 (CharacterNotInRepertoireError)")

    async def ping(self) -> None:
        await self._enter("ping")

    # users ------------------------------------------------------------------------------------

    async def count_users(self) -> int:
        await self._enter("count_users")
        return len(self.users)

    async def create_user(self, name: str, *, admin: bool = False) -> tuple[User, str]:
        await self._enter("create_user")
        user = User(
            id=f"usr_{secrets.token_hex(8)}",
            name=name,
            role="admin" if admin else "user",
            created_at=self.clock(),
        )
        api_key = f"ck_{secrets.token_urlsafe(24)}"
        self.users[user.id] = user
        self.keys[key_hash(api_key)] = user.id
        return user, api_key

    async def authenticate(self, api_key: str) -> User | None:
        await self._enter("authenticate", api_key)
        user_id = self.keys.get(key_hash(api_key))
        return None if user_id is None else self.users.get(user_id)

    async def list_users(self) -> list[User]:
        await self._enter("list_users")
        return sorted(self.users.values(), key=lambda user: (user.created_at, user.id))

    # jobs -------------------------------------------------------------------------------------

    async def set_quota(self, name: str, quota: int | None) -> User:
        await self._enter("set_quota")
        for user in self.users.values():
            if user.name == name:
                self.users[user.id] = replace(user, monthly_quota=quota)
                return self.users[user.id]
        raise NotFound(f"no user named {name!r}")

    def _used(self, owner: str) -> tuple[int, int]:
        used = sum(c for (o, _), c in self.charged.items() if o == owner)
        reserved = sum(
            j.characters for j in self.jobs.values()
            if j.owner == owner and j.status in (JobStatus.queued, JobStatus.running)
        )
        return used, reserved

    async def usage(self, owner: str) -> Usage:
        await self._enter("usage")
        used, reserved = self._used(owner)
        user = self.users[owner]
        return Usage(
            period_start="2026-11-01", resets_at="2026-12-01T00:00:00Z",
            limit=user.monthly_quota, used=used, reserved=reserved,
            jobs_charged=sum(1 for (o, _) in self.charged if o == owner),
        )

    async def create_job(
        self, job: NewJob, *, quota: int | None = None, cached: Audio | None = None,
        durable: bool = True,
    ) -> tuple[Job, bool]:
        await self._enter("create_job", job)
        if not durable:
            self.not_durable.append(job.id)
        existing_id = None
        if job.idempotency_key is not None:
            existing_id = self.by_idempotency_key.get((job.owner, job.idempotency_key))
        if existing_id is None and job.id in self.jobs:
            existing_id = job.id
        if existing_id is not None:
            existing = self.jobs[existing_id]
            if existing.owner != job.owner or existing.request_hash != job.request_hash:
                extra = {"job_id": existing.id} if existing.owner == job.owner else {}
                raise IdempotencyConflict(
                    "This idempotency key was used for a different request.", **extra
                )
            return existing, False
        if cached is None and quota is not None:
            used, reserved = self._used(job.owner)
            if used + reserved + job.characters > quota:
                raise QuotaExceeded(
                    "over quota", limit=quota, used=used, reserved=reserved,
                    remaining=max(0, quota - used - reserved), retry_after=3600,
                )
        linked = None
        if cached is not None:
            linked = self._upsert_audio(NewAudio(
                owner=job.owner, cache_key=cached.cache_key, format=cached.format,
                content_type=cached.content_type, duration_s=cached.duration_s,
                size=cached.size, path=cached.path,
            ))
        created = Job(
            id=job.id,
            owner=job.owner,
            status=JobStatus.succeeded if linked else JobStatus.queued,
            cached=linked is not None,
            audio_id=linked.id if linked else None,
            params=job.params,
            cache_key=job.cache_key,
            text=job.text,
            voice_id=job.voice_id,
            language=job.language,
            output_format=job.output_format,
            idempotency_key=job.idempotency_key,
            request_hash=job.request_hash,
            attempts=0,
            characters=job.characters,
            created_at=self.clock(),
            request_id=job.request_id,
        )
        self.jobs[job.id] = created
        if job.idempotency_key is not None:
            self.by_idempotency_key[(job.owner, job.idempotency_key)] = job.id
        return created, True

    async def discard_job(self, job_id: str) -> bool:
        await self._enter("discard_job")
        job = self.jobs.get(job_id)
        if job is None:
            return True
        if job.status is not JobStatus.queued or job.attempts != 0:
            return False
        del self.jobs[job_id]
        if job.idempotency_key is not None:
            self.by_idempotency_key.pop((job.owner, job.idempotency_key), None)
        return True

    async def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        await self._enter("get_job", job_id)
        job = self.jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    async def start_job(self, job_id: str) -> Job | None:
        await self._enter("start_job")
        job = self.jobs.get(job_id)
        if job is None or job.status.terminal:
            return job
        job = replace(
            job,
            status=JobStatus.running,
            attempts=job.attempts + 1,
            started_at=job.started_at or self.clock(),
        )
        self.jobs[job_id] = job
        return job

    async def start_job_cached(
        self, job_id: str, cache_key: str
    ) -> tuple[Job | None, Audio | None]:
        job = await self.start_job(job_id)
        if job is None or job.status is not JobStatus.running:
            return job, None
        return job, self._any_audio(job.owner, cache_key)

    async def start_jobs_cached(
        self, items: Sequence[tuple[str, str]]
    ) -> list[tuple[Job | None, Audio | None]]:
        await self._enter("start_jobs_cached")
        return [await self.start_job_cached(job_id, key) for job_id, key in items]

    def _any_audio(self, owner: str, cache_key: str) -> Audio | None:
        """The owner's audio with this key first, else anyone's (as PgStore)."""
        audio_id = self.audio_by_cache_key.get((owner, cache_key))
        if audio_id is not None:
            return self.audio[audio_id]
        for (_, key), other in self.audio_by_cache_key.items():
            if key == cache_key:
                return self.audio[other]
        return None

    async def finish_job(self, job_id: str, audio: NewAudio) -> Job:
        await self._enter("finish_job")
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"No job {job_id!r}.")
        if job.status is JobStatus.succeeded:
            return job  # idempotent: a redelivery after success changes nothing
        row = self._upsert_audio(audio)
        if job.status is not JobStatus.running:
            return job  # compare-and-set failed (queued, failed or dead)
        job = replace(
            job,
            status=JobStatus.succeeded,
            audio_id=row.id,
            finished_at=self.clock(),
            error_code=None,
            error_message=None,
            request_ids=audio.request_ids,
            character_cost=audio.character_cost,
        )
        if audio.charge:
            self.charged[(job.owner, job.id)] = audio.charge
        self.jobs[job_id] = job
        return job

    async def finish_jobs(
        self, items: Sequence[tuple[str, NewAudio]]
    ) -> list[Job | ChorusError]:
        try:
            await self._enter("finish_jobs")
        except ChorusError as exc:
            return [exc] * len(items)
        out: list[Job | ChorusError] = []
        for job_id, audio in items:
            try:
                out.append(await self.finish_job(job_id, audio))
            except ChorusError as exc:
                out.append(exc)
        return out

    def _upsert_audio(self, audio: NewAudio) -> Audio:
        if audio.alignment is not None:
            self.alignments[audio.cache_key] = audio.alignment
        existing = self.audio_by_cache_key.get((audio.owner, audio.cache_key))
        if existing is not None:
            return self.audio[existing]
        row = Audio(
            id=f"aud_{secrets.token_hex(8)}",
            owner=audio.owner,
            cache_key=audio.cache_key,
            format=audio.format,
            content_type=audio.content_type,
            duration_s=audio.duration_s,
            size=audio.size,
            path=audio.path,
            created_at=self.clock(),
        )
        self.audio[row.id] = row
        self.audio_by_cache_key[(audio.owner, audio.cache_key)] = row.id
        return row

    async def fail_job(
        self, job_id: str, code: str, message: str, *, status: JobStatus = JobStatus.failed
    ) -> Job | None:
        await self._enter("fail_job")
        if status not in (JobStatus.failed, JobStatus.dead):
            raise ValueError(f"fail_job cannot set status {status}")
        job = self.jobs.get(job_id)
        if job is None or job.status.terminal:
            return job
        job = replace(
            job, status=status, error_code=code, error_message=message, finished_at=self.clock()
        )
        self.jobs[job_id] = job
        return job

    async def note_error(self, job_id: str, code: str, message: str) -> None:
        await self._enter("note_error")
        job = self.jobs.get(job_id)
        if job is not None and not job.status.terminal:
            self.jobs[job_id] = replace(job, error_code=code, error_message=message)

    async def requeue_job(self, job_id: str) -> Job | None:
        await self._enter("requeue_job")
        job = self.jobs.get(job_id)
        if job is None or job.status not in (JobStatus.failed, JobStatus.dead):
            return job
        job = replace(
            job, status=JobStatus.queued, error_code=None, error_message=None, finished_at=None
        )
        self.jobs[job_id] = job
        return job

    async def orphan_candidates(
        self, min_age_s: float, max_age_s: float, limit: int = 500
    ) -> list[str]:
        await self._enter("orphan_candidates")
        now = self.clock()
        return [
            j.id for j in sorted(self.jobs.values(), key=lambda j: j.created_at)
            if j.status is JobStatus.queued and j.attempts == 0
            and min_age_s < (now - j.created_at).total_seconds() < max_age_s
        ][:limit]

    # audio ------------------------------------------------------------------------------------

    async def find_audio(self, owner: str, cache_key: str) -> Audio | None:
        await self._enter("find_audio")
        return self._any_audio(owner, cache_key)

    async def get_audio(self, audio_id: str, owner: str | None = None) -> Audio | None:
        await self._enter("get_audio", audio_id)
        audio = self.audio.get(audio_id)
        if audio is None or (owner is not None and audio.owner != owner):
            return None
        return audio

    async def get_audios(self, audio_ids: Sequence[str], owner: str) -> list[Audio]:
        return [a for i in audio_ids if (a := await self.get_audio(i, owner)) is not None]

    async def alignment_of(self, audio: Audio) -> Alignment | None:
        await self._enter("alignment_of")
        return self.alignments.get(audio.cache_key)


class FakeBlobStore:
    """``BlobStore`` in memory: content-addressed, first write wins."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.puts = 0

    async def put(self, key: str, ext: str, data: bytes) -> str:
        await trio.lowlevel.checkpoint()
        self.puts += 1
        path = f"{key[:2]}/{key}.{ext}"
        self.files.setdefault(path, bytes(data))
        return path

    async def put_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[str | ChorusError]:
        return [await self.put(key, ext, data) for key, ext, data in items]

    async def get(self, path: str) -> bytes:
        await trio.lowlevel.checkpoint()
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    async def exists(self, path: str) -> bool:
        await trio.lowlevel.checkpoint()
        return path in self.files


#: the voices unit tests expect (``FakeProvider(voices=TEST_VOICES)``)
TEST_VOICES = (
    VoiceInfo(voice_id="en-1", name="Ada", language="en", languages=("en",), provider="fake"),
    VoiceInfo(voice_id="en-2", name="Ben", language="en", languages=("en",), provider="fake"),
    VoiceInfo(voice_id="ko-1", name="Minji", language="ko", languages=("ko",), provider="fake"),
)


class RecordingEvents:
    """``EventSink`` that keeps what is published (no bus); never blocks, like the real one."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, subject: str | None = None) -> list[EventKind]:
        return [e.kind for e in self.events if subject is None or e.subject == subject]

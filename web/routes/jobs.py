"""``POST /v1/jobs`` (submit a speech job) and ``GET /v1/jobs/<id>``.

A job is accepted only once it is durable twice: its row in Postgres (``store.create_job``) and
its entry in the Redis stream (``ctx.submit``). If the stream cannot take it, the row is discarded
and the client gets 503 with ``Retry-After``: nothing half-accepted remains.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import trio
from quart import Blueprint, Response, request

from protocols.domain.cachekey import cache_key
from protocols.domain.text import normalize_text
from protocols.domain.voices import VoiceCatalog
from protocols.errors import (
    EnqueueFailed,
    InvalidInput,
    MalformedJSON,
    NotFound,
    ProviderQuotaExhausted,
    QueueUnavailable,
    TextEmpty,
    TextTooLong,
    UnsupportedFormat,
)
from protocols.events import EventKind, job_event
from protocols.messages import (
    DEFAULT_FORMAT,
    DictionaryRef,
    Job,
    JobStatus,
    NewJob,
    SpeechParams,
    User,
    VoiceSettings,
)
from web.auth import current_user
from web.problems import IdempotencyKeyMismatch, UnknownField, UnsupportedMediaType, json_response

if TYPE_CHECKING:
    from web.app import WebContext

log = logging.getLogger("chorus.web")

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class JobRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /v1/jobs``."""

    text: str
    voice_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    language: Annotated[str, msgspec.Meta(min_length=1, max_length=35)] | None = None
    output_format: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    idempotency_key: Key | None = None
    model_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    #: which model to prefer when ``model_id`` is not given
    preference: Literal["balanced", "latency", "quality", "expressive"] | None = None
    voice_settings: VoiceSettings | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=4294967295)] | None = None
    pronunciation_dictionary_locators: (
        Annotated[list[DictionaryRef], msgspec.Meta(max_length=3)] | None
    ) = None


FIELDS = frozenset(JobRequest.__struct_fields__)


def new_job_id() -> str:
    """``job_`` + 12 hex digits of milliseconds + 16 random hex digits: unique, time-sortable."""
    return f"job_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job) -> dict[str, Any]:
    """The JSON shape of a job (never the owner, the text or the request hash)."""
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "attempts": job.attempts,
        "characters": job.characters,
        "voice_id": job.voice_id,
        "model_id": job.params.model_id or None,
        "output_format": job.output_format,
        "language": job.language,
        "cached": job.cached,
        "created_at": iso(job.created_at),
    }
    if job.params.voice_settings is not None:
        view["voice_settings"] = msgspec.to_builtins(job.params.voice_settings)
    if job.params.seed is not None:
        view["seed"] = job.params.seed
    if job.params.dictionaries:
        view["pronunciation_dictionary_locators"] = msgspec.to_builtins(job.params.dictionaries)
    if job.request_ids:
        view["request_ids"] = list(job.request_ids)
    if job.character_cost is not None:
        view["character_cost"] = job.character_cost
    if job.started_at is not None:
        view["started_at"] = iso(job.started_at)
    if job.finished_at is not None:
        view["finished_at"] = iso(job.finished_at)
    if job.error_code is not None:
        view["error"] = {"code": job.error_code, "message": job.error_message or ""}
    if job.audio_id is not None:
        view["audio_id"] = job.audio_id
        view["audio_url"] = f"/v1/audio/{job.audio_id}"
    if job.idempotency_key is not None:
        view["idempotency_key"] = job.idempotency_key
    return view


_SHAPING = ("model_id", "preference", "voice_settings", "seed",
            "pronunciation_dictionary_locators")


def request_hash(
    text: str, voice_id: str | None, language: str | None, fmt: str,
    req: JobRequest | None = None,
) -> str:
    """sha256 over the canonical request (as the client asked, after normalization). Fields
    added later only join when given, so an older request hashes as it always did."""
    canonical: list[Any] = ["v1", text, voice_id, language, fmt]
    if req is not None:
        extra = {f: msgspec.to_builtins(getattr(req, f)) for f in _SHAPING
                 if getattr(req, f) is not None}
        if extra:
            canonical.append(extra)
    return hashlib.sha256(msgspec.json.encode(canonical)).hexdigest()


def parse_body(body: bytes) -> JobRequest:
    """Decode and type-check the body: 400 malformed_json, 422 unknown_field / invalid_input."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {mimetype}.")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedJSON("The body must be a JSON object.")
    unknown = sorted(str(name)[:64] for name in set(raw) - FIELDS)
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        raise UnknownField(
            f"Unknown field(s): {names}. Allowed: {', '.join(sorted(FIELDS))}.", fields=unknown
        )
    try:
        return msgspec.convert(raw, JobRequest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from exc


def idempotency_key(body_key: str | None) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        if not 1 <= len(header) <= 255:
            raise InvalidInput("The Idempotency-Key header must be 1 to 255 characters.")
        if body_key is not None and body_key != header:
            raise IdempotencyKeyMismatch(
                "The Idempotency-Key header and the idempotency_key field differ."
            )
        return header
    return body_key


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("jobs", __name__)
    settings = ctx.settings
    catalog = ctx.voices or VoiceCatalog(ctx.store, ctx.provider)  # type: ignore[arg-type]

    async def validated(owner: str) -> NewJob:
        """The request as a job, with its parameters settled and its cache key known."""
        body = await request.get_data(cache=False)
        req = parse_body(body)
        key = idempotency_key(req.idempotency_key)
        text = normalize_text(req.text)
        if not text:
            raise TextEmpty("text must contain something to say.")
        if len(text) > settings.max_text_chars:
            raise TextTooLong(
                f"text has {len(text)} characters; the limit is {settings.max_text_chars}.",
                limit=settings.max_text_chars,
                characters=len(text),
            )
        fmt = req.output_format or DEFAULT_FORMAT
        formats = ctx.provider.formats()
        if fmt not in formats:
            raise UnsupportedFormat(
                f"output_format {fmt!r} is not supported.", supported=sorted(formats)
            )
        language = (req.language or "").strip() or None
        voice = await catalog.for_job(req.voice_id, language, owner)  # visibility, status
        asked = SpeechParams(
            model_id=req.model_id or "",
            voice_settings=req.voice_settings,
            seed=req.seed,
            dictionaries=tuple(req.pronunciation_dictionary_locators or ()),
        )
        params = await ctx.provider.prepare(text, voice, language, asked, req.preference)
        return NewJob(
            id=new_job_id(),
            owner=owner,
            text=text,
            voice_id=voice.voice_id,
            language=language,
            output_format=fmt,
            idempotency_key=key,
            request_hash=request_hash(text, req.voice_id, language, fmt, req),
            params=params,
            cache_key=cache_key(
                provider=ctx.provider.name, text=text, voice_id=voice.voice_id,
                language=language, output_format=fmt, params=params,
                owner=owner if settings.cache_scope == "owner" else None,
            ),
        )

    async def discard(job_id: str) -> bool:
        """Undo a job whose enqueue failed. False: a worker already started it (the XADD did
        land), so it is accepted after all; an undo that fails is logged and counts as done."""
        with trio.move_on_after(settings.db_timeout_s, shield=True) as scope:
            try:
                return await ctx.store.discard_job(job_id)
            except Exception:
                log.exception("could not discard job %s after a failed submit", job_id)
        if scope.cancelled_caught:
            log.error("discarding job %s timed out after a failed submit", job_id)
        return True

    # create_job + submit, each with its own deadline inside; this bounds the whole
    bound = 2 * settings.db_timeout_s + settings.submit_timeout_s + settings.redis_timeout_s

    async def from_cache(new: NewJob) -> tuple[Job, bool] | None:
        """Existing audio with the job's cache key: the job is created succeeded, pointing at
        it; the provider is not touched and nothing is charged."""
        found = await ctx.store.find_audio(new.owner, new.cache_key)
        if found is not None and not await ctx.blobs.exists(found.path):
            log.warning("audio %s has no file; generating again", found.id)
            found = None
        await ctx.count("api_cache_hits" if found is not None else "api_cache_misses")
        if found is None:
            return None
        return await ctx.store.create_job(new, cached=found)

    async def check_account(new: NewJob) -> None:
        remaining = await ctx.provider.remaining_characters()
        if remaining is not None and remaining < new.characters:
            raise ProviderQuotaExhausted(
                f"The provider account has {remaining} characters left; this job needs"
                f" {new.characters}. Nothing was queued."
            )

    async def accept(user: User, new: NewJob) -> tuple[Job, bool]:
        """create_job + submit, shielded: a request cancelled half-way (client gone, server
        stopping) never leaves a job that is in the database but not in the stream."""
        if (hit := await from_cache(new)) is not None:
            return hit
        await check_account(new)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + bound):
            job, created = await ctx.store.create_job(new, quota=user.monthly_quota)
            if job.error_code == EnqueueFailed.code and job.status is JobStatus.failed:
                # an idempotent retry of a submit that never reached the queue: this time it may
                job = await ctx.store.requeue_job(job.id) or job
            if job.status.terminal:
                return job, created
            try:
                await ctx.submit(job.to_stream(time.time()))
            except Exception:  # QueueFull / QueueUnavailable -> 503; anything else -> 500
                if created and not await discard(job.id):
                    started = await ctx.store.get_job(job.id)
                    if started is not None:
                        return started, created  # it is running: accepted, not a 503
                raise
            return job, created
        # only reached when the bound expired: outcome unknown, undo what may have been done
        if not await discard(new.id) and (started := await ctx.store.get_job(new.id)):
            return started, True
        raise QueueUnavailable("Submitting the job did not finish in time.")

    @bp.post("/v1/jobs")
    async def submit_job() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        new = await validated(user.id)
        job, created = await accept(user, new)
        if created and job.status is JobStatus.queued:  # durable in the stream: announce it
            ctx.events.publish(job_event(EventKind.job_queued, job.id, job.owner))
        elif created and job.cached:  # answered from the cache: already final
            ctx.events.publish(job_event(
                EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id, cached=True
            ))
        location = {"Location": f"/v1/jobs/{job.id}"}
        if job.status.terminal:
            return json_response(job_view(job), 200, location)
        if not created:
            log.debug("idempotent repeat of %s (%s)", job.id, job.status)
        return json_response(job_view(job), 202, location)

    @bp.get("/v1/jobs/<job_id>")
    async def get_job(job_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        job = await ctx.store.get_job(job_id, owner=user.id)
        if job is None:
            raise NotFound(f"No job {job_id!r}.")
        return json_response(job_view(job), 200, {"Cache-Control": "no-store"})

    return bp

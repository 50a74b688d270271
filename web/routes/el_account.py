"""ElevenLabs' account routes on Chorus, in ElevenLabs' shapes: ``GET /v2/voices`` (search,
pages), ``GET /v1/user`` and ``/v1/user/subscription`` (the caller's Chorus quota),
``GET /v1/history``, ``/v1/history/<id>`` and ``/v1/history/<id>/audio`` (the caller's
succeeded jobs, newest first; another user's job is a 404 like one that does not exist).
``GET /v1/models`` is in ``compat_models.py`` (both SDKs read it)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec
from quart import Blueprint, Response, request

from protocols.domain.audio import parse_format
from protocols.domain.voices import VoiceCatalog
from protocols.errors import InvalidInput, NotFound
from protocols.messages import Job, JobStatus, Usage, User, Voice, VoiceSettings
from web.auth import current_user
from web.compat import errors
from web.compat.jobs import stored_clip
from web.inputs import decode_cursor, encode_cursor, reject_nul, stored_id
from web.problems import json_response

if TYPE_CHECKING:
    from web.context import WebContext

#: ``character_limit`` shown for a user without a quota (ElevenLabs has no "unlimited")
UNLIMITED = 1_000_000_000
MAX_PAGE = 100
#: Chorus voice categories -> ElevenLabs'
CATEGORIES = {"default": "premade"}


def page_size(default: int) -> int:
    raw = request.args.get("page_size", str(default))
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise InvalidInput("page_size must be a number from 1 to 100.", field="page_size")
    return size


def unix(value: dt.datetime) -> int:
    return int(value.timestamp())


def el_voice(voice: Voice, viewer: str) -> dict[str, Any]:
    return {
        "voice_id": voice.id, "name": voice.name,
        "category": CATEGORIES.get(voice.category, voice.category),
        "labels": voice.labels, "description": voice.description,
        "preview_url": f"/v1/voices/{voice.id}/preview" if voice.preview_audio_id else None,
        "settings": msgspec.to_builtins(voice.voice_settings or VoiceSettings()),
        "verified_languages": [{"language": lang} for lang in voice.languages or (voice.language,)
                               if lang],
        "is_owner": voice.owner == viewer, "created_at_unix": unix(voice.created_at),
        "available_for_tiers": [], "high_quality_base_model_ids": [],
    }


def subscription(usage: Usage) -> dict[str, Any]:
    resets = dt.datetime.fromisoformat(usage.resets_at.replace("Z", "+00:00"))
    return {
        "tier": "chorus", "status": "active",
        "character_count": usage.used,
        "character_limit": usage.limit if usage.limit is not None else UNLIMITED,
        "next_character_count_reset_unix": unix(resets),
        "can_extend_character_limit": False, "allowed_to_extend_character_limit": False,
        "max_credit_limit_extension": 0, "max_character_limit_extension": 0,
        "voice_slots_used": 0, "professional_voice_slots_used": 0,
        "professional_voice_slots_used_in_workspace": 0, "voice_limit": 0,
        "voice_add_edit_counter": 0, "professional_voice_limit": 0,
        "can_extend_voice_limit": False, "can_use_instant_voice_cloning": True,
        "can_use_professional_voice_cloning": False,
        "current_overage": {"amount": 0, "currency": "usd"},
        "character_refresh_period": "monthly_period",
    }


def history_item(job: Job) -> dict[str, Any]:
    return {
        "history_item_id": job.id, "request_id": job.id, "voice_id": job.voice_id,
        "voice_name": job.voice_id, "model_id": job.params.model_id or None,
        "text": job.text, "date_unix": unix(job.created_at),
        "character_count_change_from": 0,
        "character_count_change_to": 0 if job.cached else job.characters,
        "content_type": parse_format(job.output_format).content_type,
        "output_format": job.output_format, "state": "created", "source": "TTS",
        "settings": msgspec.to_builtins(job.params.voice_settings)
        if job.params.voice_settings else None,
    }


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("el_account", __name__)
    errors.install(bp, errors.elevenlabs_error)
    catalog = ctx.voices or VoiceCatalog(ctx.store, ctx.provider)  # type: ignore[arg-type]

    async def own_job(item_id: str, user: User) -> Job:
        job = await ctx.store.get_job(stored_id(item_id, "history item"), owner=user.id)
        if job is None or job.status is not JobStatus.succeeded:
            raise NotFound(f"No history item {item_id!r}.")
        return job

    @bp.get("/v2/voices")
    async def search_voices() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        await catalog.ensure_defaults()
        size = page_size(10)
        search = request.args.get("search", "").strip()[:100]
        reject_nul(search, "search")
        voices = await catalog.store.list_voices(
            user.id, catalog.provider, search=search or None,
            after=decode_cursor(request.args.get("next_page_token")), limit=size + 1,
        )
        more = len(voices) > size
        voices = voices[:size]
        total = len(voices) if not more and not request.args.get("next_page_token") else len(
            await catalog.store.list_voices(user.id, catalog.provider, search=search or None,
                                            limit=10_000)
        )
        return json_response({
            "voices": [el_voice(v, user.id) for v in voices], "has_more": more,
            "total_count": total, "next_page_token": encode_cursor(voices[-1].id) if more else None,
        })

    @bp.get("/v1/user/subscription")
    async def get_subscription() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        body = subscription(await ctx.store.usage(user.id))
        return json_response(body, 200, {"Cache-Control": "no-store"})

    @bp.get("/v1/user")
    async def get_user() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        body = {
            "user_id": user.id, "first_name": user.name, "workspace_id": "chorus",
            "subscription": subscription(await ctx.store.usage(user.id)),
            "is_new_user": False, "can_use_delayed_payment_methods": False,
            "is_onboarding_completed": True, "is_onboarding_checklist_completed": True,
            "created_at": unix(user.created_at), "seat_type": "workspace_member",
            "is_api_key_hashed": True,
        }
        return json_response(body, 200, {"Cache-Control": "no-store"})

    @bp.get("/v1/history")
    async def list_history() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        size = page_size(100)
        after_id = request.args.get("start_after_history_item_id")
        before = None
        if after_id:
            last = await own_job(after_id, user)
            before = (last.created_at, last.id)
        jobs = await ctx.store.list_jobs(
            user.id, status=JobStatus.succeeded, before=before, limit=size + 1
        )
        more = len(jobs) > size
        jobs = jobs[:size]
        return json_response({
            "history": [history_item(j) for j in jobs], "has_more": more,
            "last_history_item_id": jobs[-1].id if jobs else None,
        }, 200, {"Cache-Control": "no-store"})

    @bp.get("/v1/history/<item_id>")
    async def get_history_item(item_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        return json_response(history_item(await own_job(item_id, user)))

    @bp.get("/v1/history/<item_id>/audio")
    async def get_history_audio(item_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        audio, data = await stored_clip(ctx, await own_job(item_id, user))
        return Response(data, 200, {"Cache-Control": "private, max-age=3600"},
                        content_type=audio.content_type)

    return bp

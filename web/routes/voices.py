"""Voices: list, get, clone, edit (forwarded to the provider), delete, and the preview clip (got,
or made again: ``actors/voices/previews.py``); ``protocols/domain/voices.py`` holds the rules.
Another user's private voice answers exactly like a voice that does not exist. The JSON bodies
are decoded by the Structs of ``voice_bodies.py`` (the ones ``/openapi.json`` shows)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET
from quart import Blueprint, Response, request

from actors.voices.previews import remake_preview
from protocols.domain.voices import VoiceCatalog, not_found, voice_event
from protocols.errors import (
    ChorusError,
    InvalidInput,
    NotFound,
    UnknownVoice,
)
from protocols.events import EventKind
from protocols.messages import Visibility, Voice, VoiceSettings, VoiceStatus
from web.auth import current_user
from web.inputs import decode_cursor, encode_cursor, reject_nul, stored_id
from web.problems import json_response
from web.routes.jobs import idempotency_key
from web.routes.voice_bodies import preview_request, voice_patch
from web.routes.voice_uploads import (
    InvalidLabels,
    check_description,
    check_labels,
    check_name,
    check_visibility,
    parse_clone,
)
from web.views import iso, job_view

if TYPE_CHECKING:
    from web.context import WebContext

log = logging.getLogger("chorus.web")

PAGE = 100


def primary(language: str) -> str:
    """``en-US`` -> ``en`` (BCP-47 primary subtag, lower case)."""
    return language.strip().replace("_", "-").split("-", 1)[0].lower()


def voice_view(voice: Voice, viewer: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": voice.id, "voice_id": voice.id, "name": voice.name,
        "description": voice.description, "labels": voice.labels,
        "language": voice.language, "languages": list(voice.languages),
        "provider": voice.provider, "category": voice.category,
        "status": voice.status.value, "visibility": voice.visibility.value,
        "mine": voice.owner == viewer,
        "voice_settings": msgspec.to_builtins(voice.voice_settings or VoiceSettings()),
        "created_at": iso(voice.created_at), "updated_at": iso(voice.updated_at),
    }
    if voice.status_reason:
        view["status_reason"] = voice.status_reason
    if voice.preview_audio_id:
        view["preview_audio_id"] = voice.preview_audio_id
        view["preview_url"] = f"/v1/voices/{voice.id}/preview"
    if voice.preview_pending and voice.owner == viewer:  # being made: follow this job
        view["preview_job_id"] = voice.preview_job_id
    return view


def _choice(name: str, allowed: type) -> str | None:
    value = request.args.get(name, "").strip() or None
    if value is not None and value not in {m.value for m in allowed}:
        raise InvalidInput(f"{name} must be one of {', '.join(m.value for m in allowed)}.",
                           field=name)
    return value


def too_deep() -> InvalidLabels:
    """Labels given as JSON text nested too deeply for the decoder: refused like any other bad
    labels (422 invalid_labels), never a 500."""
    return InvalidLabels("labels must be a JSON object of strings (these nest too deeply).")


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("voices", __name__)
    catalog = ctx.voices or VoiceCatalog(ctx.store, ctx.provider)  # type: ignore[arg-type]

    @bp.get("/v1/voices")
    async def list_voices() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        await catalog.ensure_defaults()
        try:
            limit = int(request.args.get("limit", PAGE))
        except ValueError:
            raise InvalidInput("limit must be a number from 1 to 100.", field="limit") from None
        if not 1 <= limit <= PAGE:
            raise InvalidInput("limit must be a number from 1 to 100.", field="limit")
        language = request.args.get("language", "").strip()
        search = request.args.get("search", "").strip()[:100]
        reject_nul(language, "language")
        reject_nul(search, "search")
        voices = await catalog.store.list_voices(
            user.id, catalog.provider, visibility=_choice("visibility", Visibility),
            language=primary(language) if language else None,
            status=_choice("status", VoiceStatus),
            search=search or None,
            after=decode_cursor(request.args.get("cursor")), limit=limit + 1,
        )
        more = len(voices) > limit
        voices = voices[:limit]
        cursor = encode_cursor(voices[-1].id) if more else None
        return json_response({"voices": [voice_view(v, user.id) for v in voices],
                              "next_cursor": cursor})

    @bp.get("/v1/voices/<voice_id>")
    async def get_voice(voice_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        stored_id(voice_id, "voice", not_found)
        try:
            voice = await catalog.visible(voice_id, user.id)
        except UnknownVoice:
            await catalog.ensure_defaults()  # a default voice not synced yet
            voice = await catalog.visible(voice_id, user.id)
        return json_response(voice_view(voice, user.id))

    @bp.get("/v1/voices/<voice_id>/preview")
    async def get_preview(voice_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        voice = await catalog.visible(stored_id(voice_id, "voice", not_found), user.id)
        audio = voice.preview_audio_id and await ctx.store.get_audio(voice.preview_audio_id)
        if not audio:
            raise NotFound(f"Voice {voice_id!r} has no preview yet.")
        data = await ctx.blobs.get(audio.path)
        return Response(data, 200, content_type=audio.content_type,
                        headers={"Cache-Control": "private, max-age=3600"})

    @bp.post("/v1/voices")
    async def clone_voice() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        try:
            fields = await parse_clone()
        except RecursionError as exc:  # from decoding the labels field
            raise too_deep() from exc
        for name in ("name", "description", "labels", "language"):
            reject_nul(fields[name], name)
        voice = await catalog.clone(owner=user.id, **fields)
        ctx.events.publish(voice_event(EventKind.voice_created, voice, status="processing"))
        try:
            await ctx.track_voice(voice)
        except ChorusError as exc:  # VoiceSync finds it in Postgres on its next rescan
            log.warning("voice %s not scheduled now: %s", voice.id, exc.detail)
        return json_response(voice_view(voice, user.id), 202,
                             {"Location": f"/v1/voices/{voice.id}"})

    @bp.patch("/v1/voices/<voice_id>")
    async def patch_voice(voice_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        await catalog.owned(stored_id(voice_id, "voice", not_found), user.id)
        patch = voice_patch(await request.get_data(cache=False))
        changes: dict[str, Any] = {}
        if patch.name is not UNSET:
            changes["name"] = check_name(patch.name)
        if patch.description is not UNSET:
            changes["description"] = check_description(patch.description)
        if patch.labels is not UNSET:
            try:
                changes["labels"] = check_labels(patch.labels or {})
            except RecursionError as exc:
                raise too_deep() from exc
        if patch.visibility is not UNSET:
            changes["visibility"] = check_visibility(patch.visibility).value
        for name, value in changes.items():  # labels may have been JSON text with escapes
            reject_nul(value, name)
        if patch.voice_settings is not UNSET:  # null or {} clears them
            changes["voice_settings"] = patch.voice_settings or VoiceSettings()
        # name, description and labels at the provider first; a refusal changes nothing
        voice = await catalog.edit(voice_id, user.id, **changes)
        if changes:
            ctx.events.publish(voice_event(EventKind.voice_updated, voice,
                                           changed=sorted(changes)))
        return json_response(voice_view(voice, user.id))

    @bp.post("/v1/voices/<voice_id>/preview")
    async def remake(voice_id: str) -> Response:
        """The preview made again (with ``text``, or the language's sample) as a job of the
        owner: 202 with the job and the voice (200 once the job has ended: the cache)."""
        user = await current_user(ctx.store, ctx.known_keys)
        await catalog.owned(stored_id(voice_id, "voice", not_found), user.id)
        asked = preview_request(await request.get_data(cache=False))
        job, voice = await remake_preview(
            intake=ctx.intake, catalog=catalog, user=user, voice_id=voice_id, text=asked.text,
            idempotency_key=idempotency_key(asked.idempotency_key), track=ctx.track_voice,
            events=ctx.events,
        )
        return json_response(
            {"job": job_view(job, ctx.audio_signer), "voice": voice_view(voice, user.id)},
            200 if job.status.terminal else 202, {"Location": f"/v1/jobs/{job.id}"},
        )

    @bp.delete("/v1/voices/<voice_id>")
    async def delete_voice(voice_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        voice = await catalog.delete(stored_id(voice_id, "voice", not_found), user.id)
        ctx.events.publish(voice_event(EventKind.voice_deleted, voice))
        return Response(b"", status=204)

    return bp

"""Voices as users see them: visibility, the provider's defaults kept in Postgres, resolving the
voice a job names, cloning, editing and deleting, a voice's default settings under a job's, and
the preview clip's job. Used by the web front, the Intake and VoiceSync.

Visibility: a voice is visible to its owner, and to everyone when ``public`` or ``default``;
another user's private voice does not exist for anyone else (``voice_not_found``, 404, with the
same message as a voice that never existed). Default voices keep the provider's id as ours
(``en-us``, ElevenLabs premade ids), so existing clients keep working; espeak variants such as
``en-us+f3`` are not rows but resolve through the provider. Clones get ``voice_`` + random hex.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import trio

from protocols.domain.cachekey import scoped_cache_key
from protocols.domain.jobs import new_job_id
from protocols.errors import (
    ChorusError,
    Forbidden,
    ProviderError,
    UnknownVoice,
    VoiceNotReady,
)
from protocols.events import Event, EventKind
from protocols.messages import (
    CloneFile,
    NewJob,
    NewVoice,
    SpeechParams,
    Visibility,
    Voice,
    VoiceInfo,
    VoiceSettings,
    VoiceStatus,
)
from protocols.ports import SpeechProvider, VoiceManager, VoiceStore
from protocols.settings import Settings

log = logging.getLogger("chorus.voices")

DEFAULTS_TTL_S = 600.0
#: a default voice's row, once read, is used this long without asking the store again (the
#: provider's voices, visible to everyone: a change made in another process shows within it)
DEFAULT_ROW_TTL_S = 5.0
RESTORE_S = 30.0  # putting a voice back at the provider after a failed edit
#: what ``PATCH /v1/voices/{id}`` forwards to the provider (the rest lives in Chorus only)
AT_PROVIDER = ("name", "description", "labels")
SAMPLES = {
    "en": "Hello! This is a preview of my voice. I hope you like how it sounds.",
    "ko": "안녕하세요! 제 목소리 미리 듣기입니다. 마음에 드셨으면 좋겠어요.",
    "de": "Hallo! Das ist eine Hörprobe meiner Stimme.",
    "fr": "Bonjour ! Voici un aperçu de ma voix.",
    "es": "¡Hola! Esta es una muestra de mi voz.",
    "it": "Ciao! Questa è un'anteprima della mia voce.",
    "ja": "こんにちは。これは私の声のプレビューです。",
    "pt": "Olá! Esta é uma prévia da minha voz.",
}


def new_voice_id() -> str:
    return "voice_" + secrets.token_hex(10)


def not_found(voice_id: str) -> UnknownVoice:
    """The one answer for a voice that does not exist and for another user's private voice."""
    return UnknownVoice(f"No voice {voice_id!r}.", voice_id=voice_id)


def voice_event(kind: EventKind, voice: Voice, **data: Any) -> Event:
    return Event(kind=kind, owner=voice.owner or "", subject=voice.id, data=data, at=time.time())


class VoiceCatalog:
    """One per process (built with the Service): the store, the speech provider and its voice
    manager (the provider's own unless one is given)."""

    def __init__(
        self, store: VoiceStore, speech: SpeechProvider, manager: VoiceManager | None = None,
        *, defaults_ttl_s: float = DEFAULTS_TTL_S,
    ) -> None:
        self.store, self.speech = store, speech
        self.manager = manager or speech.voice_manager()
        self.provider = speech.name
        self._ttl = defaults_ttl_s
        self._synced_at = -float("inf")
        self._lock = trio.Lock()
        #: voice id -> (until when, on trio's clock; its row): default voices only (``_row``)
        self._default_rows: dict[str, tuple[float, Voice]] = {}

    async def ensure_defaults(self, *, force: bool = False) -> None:
        """Upsert the provider's default voices (at most every ``defaults_ttl_s``; idempotent).
        A provider that cannot list them now leaves what the table has."""
        async with self._lock:
            if not force and trio.current_time() - self._synced_at < self._ttl:
                return
            try:
                voices = await self.manager.default_voices()
            except ProviderError as exc:
                log.warning("could not list the %s default voices: %s", self.provider, exc.detail)
                return
            await self.store.upsert_default_voices(self.provider, voices)
            self._default_rows.clear()
            self._synced_at = trio.current_time()

    async def visible(self, voice_id: str, viewer: str) -> Voice:
        voice = await self.store.get_voice(voice_id, viewer)
        if voice is None or voice.provider != self.provider:
            raise not_found(voice_id)
        return voice

    async def owned(self, voice_id: str, viewer: str) -> Voice:
        voice = await self.visible(voice_id, viewer)
        if voice.owner != viewer:
            raise Forbidden("Only the owner of a voice can change or delete it.")
        return voice

    async def for_job(self, voice_id: str | None, language: str | None, viewer: str) -> VoiceInfo:
        """The voice a job of ``viewer`` will speak with (what is sent to the provider)."""
        if voice_id is None:
            return await self.speech.resolve_voice(None, language)
        row = await self._row(voice_id)
        if row is None:  # a provider id: only usable through its row when it is a clone
            row = await self.store.voice_by_provider_id(self.provider, voice_id)
            if row is not None and row.visibility is Visibility.default:
                row = None
        if row is not None:
            if not row.visible_to(viewer) or row.provider != self.provider:
                raise not_found(voice_id)
            if row.visibility is not Visibility.default:
                if row.status is not VoiceStatus.completed:
                    raise VoiceNotReady(
                        f"Voice {voice_id!r} is {row.status.value}"
                        + (f": {row.status_reason}" if row.status_reason else "."),
                        voice_id=voice_id, voice_status=row.status.value,
                    )
                return row.info()
            voice_id = row.provider_voice_id
        # a default voice, or a voice of the provider account that was not made through Chorus
        # (e.g. in the ElevenLabs app): the operator's, usable by every user like a default one.
        # Voices cloned through Chorus always have a row, checked above.
        try:
            return await self.speech.resolve_voice(voice_id, language)
        except UnknownVoice:
            raise not_found(voice_id) from None

    async def _row(self, voice_id: str) -> Voice | None:
        """``store.get_voice``; a default voice's row is remembered for ``DEFAULT_ROW_TTL_S``
        (every job naming a default voice would read it otherwise). Only default rows: they
        are everyone's, so nothing private is ever kept or shown from here."""
        now = trio.current_time()
        known = self._default_rows.get(voice_id)
        if known is not None and known[0] > now:
            return known[1]
        row = await self.store.get_voice(voice_id)
        if row is not None and row.visibility is Visibility.default:
            if len(self._default_rows) >= 1000:
                self._default_rows.clear()
            self._default_rows[voice_id] = (now + DEFAULT_ROW_TTL_S, row)
        else:
            self._default_rows.pop(voice_id, None)
        return row

    async def clone(
        self, *, owner: str, name: str, description: str, labels: dict[str, str],
        files: Sequence[CloneFile], visibility: Visibility, language: str,
    ) -> Voice:
        """Check the account, upload to the provider, record the voice as processing."""
        await self.manager.check_can_clone()
        provider_id, verify = await self.manager.clone(name, description, labels, files)
        new = NewVoice(
            id=new_voice_id(), provider=self.provider, provider_voice_id=provider_id,
            owner=owner, name=name, description=description, labels=labels,
            language=language, languages=(language,), category="cloned",
            status=VoiceStatus.processing, visibility=visibility,
            status_reason="the provider requires verification of this voice" if verify else None,
        )
        try:
            return await self.store.create_voice(new)
        except ChorusError:
            with trio.move_on_after(10, shield=True):
                try:
                    await self.manager.delete(provider_id)
                except ChorusError as exc:
                    log.error("voice %s left at the provider: %s", provider_id, exc.detail)
            raise

    async def edit(self, voice_id: str, viewer: str, **changes: Any) -> Voice:
        """Change the owner's voice: name, description and labels at the provider first (all
        three as they are to be), then the row (those, ``visibility``, ``voice_settings``).

        The two stay consistent: a provider that refuses leaves the row unchanged (its typed
        error propagates); when the row cannot be written after the provider took the change,
        or the provider's outcome is unknown (a timeout, a cancelled request), the provider is
        given the old values back (shielded, at most ``RESTORE_S``) before the error
        propagates. Nothing is sent to the provider when none of its fields change."""
        voice = await self.owned(voice_id, viewer)
        target = {f: changes.get(f, getattr(voice, f)) for f in AT_PROVIDER}
        if all(target[f] == getattr(voice, f) for f in AT_PROVIDER):
            return await self._update(voice, viewer, changes)
        maybe_changed = True
        try:
            try:
                await self.manager.edit(voice.provider_voice_id, **target)
            except ProviderError as exc:
                maybe_changed = exc.retryable  # timed out or 5xx: it may have been applied
                raise
            return await self._update(voice, viewer, changes)
        except BaseException:  # re-raised below, cancellation included
            if maybe_changed:
                await self._restore(voice)
            raise

    async def _update(self, voice: Voice, viewer: str, changes: dict[str, Any]) -> Voice:
        self._default_rows.pop(voice.id, None)
        updated = await self.store.update_voice(voice.id, viewer, **changes)
        if updated is None:  # deleted meanwhile
            raise not_found(voice.id)
        return updated

    async def _restore(self, voice: Voice) -> None:
        with trio.move_on_after(RESTORE_S, shield=True) as scope:
            try:
                await self.manager.edit(
                    voice.provider_voice_id, name=voice.name, description=voice.description,
                    labels=voice.labels,
                )
                return
            except ChorusError as exc:
                log.error("voice %s: the provider may keep an edit Chorus did not record: %s",
                          voice.id, exc.detail)
        if scope.cancelled_caught:
            log.error("voice %s: putting it back at the provider timed out", voice.id)

    async def delete(self, voice_id: str, viewer: str) -> Voice:
        """Remove the voice at the provider, then here. Audio made with it is kept."""
        voice = await self.owned(voice_id, viewer)
        await self.manager.delete(voice.provider_voice_id)
        self._default_rows.pop(voice.id, None)
        gone = await self.store.delete_voice(voice.id, viewer)
        if gone is None:
            raise not_found(voice_id)
        return gone


def job_settings(
    asked: VoiceSettings | None, defaults: VoiceSettings | None
) -> VoiceSettings | None:
    """A job's voice settings: the fields it gives, the voice's defaults for the others (the
    provider's own for fields neither sets). Settled at submit, so the cache key has them."""
    if defaults is None or asked is None:
        return asked if defaults is None else defaults
    given = {k: v for k, v in msgspec.structs.asdict(asked).items() if v is not None}
    return msgspec.structs.replace(defaults, **given)


def sample_text(language: str) -> str:
    return SAMPLES.get((language or "en").split("-", 1)[0].lower(), SAMPLES["en"])


async def preview_job(voice: Voice, speech: SpeechProvider, settings: Settings) -> NewJob:
    """The first preview clip of a ready voice (VoiceSync's) as a job of its owner, with the
    voice's default settings (idempotent per voice). Quota-checked and charged like any job
    (README "Voices": previews and quotas)."""
    info = voice.info()
    text = sample_text(voice.language)
    language = voice.language or None
    asked = SpeechParams(voice_settings=voice.voice_settings)
    params = await speech.prepare(text, info, language, asked)
    fmt = "mp3_44100_128"
    owner = voice.owner or ""
    return NewJob(
        id=new_job_id(),
        owner=owner, text=text, voice_id=info.voice_id, language=language, output_format=fmt,
        idempotency_key=f"voice-preview:{voice.id}", request_hash=f"voice-preview:{voice.id}",
        params=params,
        cache_key=scoped_cache_key(
            owner=owner, scope=settings.cache_scope, provider=speech.name, text=text,
            voice_id=info.voice_id, language=language, output_format=fmt, params=params,
        ),
    )

"""ElevenLabs: the SpeechProvider for production (chosen when ``ELEVENLABS_API_KEY`` is set).

The official SDK (``AsyncElevenLabs``) on our own ``httpx.AsyncClient``, with ``max_retries=0``
on every call: the SDK's retry sleeps with ``asyncio.sleep`` (it breaks under trio) and drops the
form fields of a retried multipart upload. Retrying is ours, on ``trio.sleep``, as the provider
documents it (reference/elevenlabs.md §2):

- 429 ``too_many_concurrent_requests`` / ``concurrent_limit_exceeded``: the account is busy;
  wait for a slot and resend, without spending an attempt (bounded by ``provider_wait_s``);
- 429 ``system_busy`` / rate limits, 5xx, timeouts and connection errors: exponential backoff
  with jitter, capped, at most ``provider_max_attempts`` tries; then ``ProviderUnavailable``
  (the job is released and redelivered later). A timed-out request may still have been charged:
  it is logged and counted;
- 401 ``invalid_api_key`` / ``quota_exceeded`` / ``detected_unusual_activity``, 403, 400
  ``max_character_limit_exceeded`` and other rejections, 404 ``voice_not_found``: a typed,
  permanent error at once (the job fails with it).

A redelivered job whose earlier attempt may have generated its audio
(``SynthesisRequest.previous_attempt_since``) is first looked up in the account's history and
downloaded from there when every part of its text is found (``elevenlabs/history.py``): a crash
between ElevenLabs' answer and the stored audio does not pay twice.

Every part is asked for through ``/with-timestamps``: the audio comes with its character
alignment, which becomes the clip's (``_alignment``: parts shifted by the ones before them; the
user's words found in what was sent, SSML tags skipped). A clip found again in the history has
none (the routes then estimate). ``<break>`` and ``<phoneme>`` are sent as written: ElevenLabs
reads them natively.

Chorus's own pronunciation dictionaries (``pd_...``) are kept here too
(``elevenlabs/dictionaries.py``); a job pinned to one of their versions is sent ElevenLabs'
locator of that version (``_sent``).

Actors only ever see our typed errors. The API key is never logged nor put in an error.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import msgspec
import trio

from protocols.dictionaries import AliasRule, Rule, is_chorus_dictionary
from protocols.domain.audio import (
    FORMATS,
    audio_duration,
    concat_pcm,
    decode_to_pcm,
    encode_pcm,
    parse_format,
)
from protocols.domain.pronunciation import apply_rules
from protocols.domain.ssml import InvalidMarkup, charged_characters, spoken_text
from protocols.domain.text import split_text
from protocols.domain.timing import from_characters
from protocols.errors import (
    InvalidInput,
    ProviderAuthFailed,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    SynthesisFailed,
    UnknownVoice,
)
from protocols.live import ChunkSink
from protocols.messages import (
    Alignment,
    DictionaryRef,
    SpeechParams,
    SynthesisRequest,
    SynthesisResult,
    VoiceInfo,
)
from protocols.metrics import instruments as metrics
from protocols.ports import DictionaryMirror, Lexicon, VoiceManager
from protocols.providers.base import account_name
from protocols.providers.elevenlabs.dictionaries import ElevenLabsDictionaries
from protocols.providers.elevenlabs.errors import Failure, classify
from protocols.providers.elevenlabs.history import History
from protocols.providers.elevenlabs.models import (
    STATIC_MODELS,
    ModelInfo,
    Preference,
    catalogue_from_api,
    pick_model,
    primary_language,
)
from protocols.providers.elevenlabs.streaming import synthesize_streaming
from protocols.providers.elevenlabs.voices import ElevenLabsVoices
from protocols.settings import Settings

T = TypeVar("T")
log = logging.getLogger("chorus.elevenlabs")

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
FALLBACK_VOICE_ID = "21m00Tcm4TlvDq8ikWAM"  # premade "Rachel", when the account lists no voices
MODELS_TTL_S = 3600.0
VOICES_TTL_S = 600.0
SUBSCRIPTION_TTL_S = 60.0
DICTIONARY_TTL_S = 300.0
BACKOFF_BASE_S = 0.5
WAIT_CAP_S = 1.0  # a concurrency 429: in-flight requests finish within about a second
BACKOFF_CAP_S = 8.0
CONTEXT_CHARS = 300  # previous_text / next_text around a part of a split text
MAX_CONTEXT_IDS = 3
MAX_DICTIONARIES = 3


class _Cached:
    """One value fetched at most every ``ttl`` seconds (on trio's clock); concurrent callers
    share one fetch."""

    def __init__(self, ttl: float, fetch: Callable[[], Awaitable[Any]]) -> None:
        self.ttl, self._fetch = ttl, fetch
        self._value: Any = None
        self._at = -float("inf")
        self._lock = trio.Lock()

    async def get(self) -> Any:
        if trio.current_time() - self._at < self.ttl:
            return self._value
        async with self._lock:
            if trio.current_time() - self._at >= self.ttl:
                self._value = await self._fetch()
                self._at = trio.current_time()
        return self._value

    def invalidate(self) -> None:
        self._at = -float("inf")


class ProviderStatistics(msgspec.Struct, frozen=True):
    requests: int
    waits: int  # 429 concurrency: waited for a slot
    backoffs: int  # transient errors retried
    timeouts: int  # may have been charged
    characters: int  # character-cost the provider reported
    history_reuses: int = 0  # redelivered jobs whose audio was found in the history
    history_failures: int = 0  # history look-ups that failed (the text was generated)


class ElevenLabsProvider:
    """``SpeechProvider`` on ElevenLabs. Build with ``ElevenLabsProvider.open(settings)``."""

    name = "elevenlabs"
    shared_account = True  # every worker draws on one account: the global semaphore applies

    def __init__(self, client: Any, settings: Settings, rng: random.Random | None = None) -> None:
        self._sdk = client
        self.settings = settings
        self._random = rng or random.Random()
        self._models = _Cached(MODELS_TTL_S, self._fetch_models)
        self._voices = _Cached(VOICES_TTL_S, self._fetch_voices)
        self._subscription = _Cached(SUBSCRIPTION_TTL_S, self._fetch_subscription)
        self._dict_versions: dict[str, tuple[float, str]] = {}
        self._voice_by_id: dict[str, tuple[float, VoiceInfo]] = {}
        self._unknown_defaults: set[str] = set()
        self._lexicon: Lexicon | None = None
        self._history = History(self)
        self._requests = self._waits = self._backoffs = self._timeouts = self._chars = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[ElevenLabsProvider]:
        if settings.elevenlabs_api_key is None:
            raise ProviderAuthFailed("ELEVENLABS_API_KEY is not set")
        from elevenlabs import AsyncElevenLabs  # ~0.4 s and ~40 MB: only when used

        timeout = settings.elevenlabs_timeout_s
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        ) as http:
            sdk = AsyncElevenLabs(
                api_key=settings.elevenlabs_api_key.reveal(),
                base_url=(settings.elevenlabs_base_url or DEFAULT_BASE_URL).rstrip("/"),
                httpx_client=http,
                timeout=timeout,
            )
            yield cls(sdk, settings)

    @property
    def account(self) -> str:
        """The account the API key opens (named by a hash of the key)."""
        key = self.settings.elevenlabs_api_key
        return account_name(self.name, key.reveal() if key is not None else "")

    def voice_manager(self) -> VoiceManager:
        """Cloning, readiness and the premade voices on this account."""
        return ElevenLabsVoices(self)

    def dictionary_mirror(self) -> DictionaryMirror:
        """Chorus's dictionaries kept as pronunciation dictionaries on this account."""
        return ElevenLabsDictionaries(self)

    def use_lexicon(self, lexicon: Lexicon) -> None:
        self._lexicon = lexicon

    def statistics(self) -> ProviderStatistics:
        return ProviderStatistics(
            self._requests, self._waits, self._backoffs, self._timeouts, self._chars,
            history_reuses=self._history.reuses, history_failures=self._history.failures,
        )

    # -- one request, our retry policy ------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {"max_retries": 0, "timeout_in_seconds": self.settings.elevenlabs_timeout_s,
                "chunk_size": 65536}

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any,
                   idempotent: bool = True, once: bool = False, **kwargs: Any) -> T:
        """``fn(*args, **kwargs, request_options=...)`` with the documented retry policy.

        ``idempotent=False`` (creating a voice): only failures that mean "not processed" (429,
        a connection that was never made) are retried; after a timeout or a 5xx the outcome is
        unknown and the error is raised, so a retry cannot create a second voice. ``once``: no
        retry at all (a best-effort look-up that has a fallback)."""
        from elevenlabs.core.api_error import ApiError

        s = self.settings
        attempts = waits = 0
        give_up_at = trio.current_time() + s.provider_wait_s
        while True:
            self._requests += 1
            unprocessed = throttled = False
            try:
                with trio.fail_after(s.elevenlabs_timeout_s + 5):  # httpx's own timeout first
                    return await fn(*args, **kwargs, request_options=self._options())
            except ApiError as exc:
                failure = classify(exc.status_code or 0, exc.body, exc.headers or {})
                unprocessed = throttled = exc.status_code == 429
            except (httpx.TimeoutException, trio.TooSlowError):
                self._timeouts += 1
                log.warning("ElevenLabs %s timed out (the request may have been charged)", what)
                failure = Failure("backoff", ProviderUnavailable(f"ElevenLabs {what} timed out"))
            except httpx.HTTPError as exc:
                failure = Failure(
                    "backoff",
                    ProviderUnavailable(f"ElevenLabs {what}: {type(exc).__name__}"),
                )
                unprocessed = isinstance(exc, httpx.ConnectError)
            now = trio.current_time()
            if failure.kind == "fatal" or once or (not idempotent and not unprocessed):
                raise failure.error
            if failure.kind == "wait":
                self._waits += 1
                waits += 1
                wait = min(WAIT_CAP_S, 0.1 * 2 ** min(waits, 4))
                delay = failure.retry_after or self._jitter(wait)
            else:
                attempts += 1
                self._backoffs += 1
                if attempts >= s.provider_max_attempts:
                    raise failure.error
                delay = failure.retry_after or self._jitter(
                    min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
                )
            if now + delay > give_up_at:
                raise failure.error
            if throttled:  # a 429 waited out: the caller never sees it
                metrics.provider_429_absorbed(self.name)
            log.info("ElevenLabs %s: %s; again in %.2f s", what, failure.error.detail, delay)
            await trio.sleep(delay)

    def _jitter(self, delay: float) -> float:
        return delay * (0.5 + self._random.random() / 2)

    # -- catalogues (cached) -------------------------------------------------------------------

    async def _fetch_models(self) -> dict[str, ModelInfo]:
        try:
            models = await self.call("models", self._sdk.models.list)
        except (ProviderUnavailable, ProviderRejected) as exc:
            log.warning("GET /v1/models failed (%s); using the static model table", exc.detail)
            return dict(STATIC_MODELS)
        live = catalogue_from_api(m.model_dump() for m in models)
        return live or dict(STATIC_MODELS)

    async def models(self) -> dict[str, ModelInfo]:
        return await self._models.get()

    async def _fetch_voices(self) -> dict[str, VoiceInfo]:
        """The account's voices (``GET /v2/voices``, every page). A listing that fails is
        logged and empty (explicit voice ids are then looked up one by one)."""
        try:
            return await self.search_voices()
        except (ProviderUnavailable, ProviderRejected) as exc:
            log.warning("GET /v2/voices failed (%s); trying GET /v1/voices", exc.detail)
        try:  # the legacy listing (one page, capped at 500 voices by ElevenLabs)
            legacy = await self.call("voices", self._sdk.voices.get_all)
        except (ProviderUnavailable, ProviderRejected) as exc:
            log.warning("GET /v1/voices failed (%s); voices are looked up by id", exc.detail)
            return {}
        return {
            info.voice_id: info
            for info in (_voice_info(v.model_dump()) for v in legacy.voices)
        }

    @property
    def sdk(self) -> Any:
        """The SDK client (``AsyncElevenLabs``); call it through ``call`` only."""
        return self._sdk

    async def search_voices(self, **filters: Any) -> dict[str, VoiceInfo]:
        """Every page of ``GET /v2/voices`` with ``filters`` (e.g. ``voice_type="default"``)."""
        voices: dict[str, VoiceInfo] = {}
        token: str | None = None
        for _ in range(100):  # 100 pages of 100: far beyond any account
            page = await self.call(
                "voices", self._sdk.voices.search, page_size=100, next_page_token=token,
                include_total_count=False, **filters,
            )
            for voice in page.voices:
                info = _voice_info(voice.model_dump())
                voices[info.voice_id] = info
            token = page.next_page_token
            if not page.has_more or not token:
                break
        return voices

    async def _fetch_subscription(self) -> dict[str, Any] | None:
        try:
            sub = await self.call("subscription", self._sdk.user.subscription.get)
        except ProviderError as exc:
            log.warning("GET /v1/user/subscription failed: %s", exc.detail)
            return None
        return sub.model_dump()

    async def subscription(self) -> dict[str, Any] | None:
        return await self._subscription.get()

    async def remaining_characters(self) -> int | None:
        """Characters the account has left this period (cached for a minute); None when it
        may go over (overage allowed) or the subscription cannot be read."""
        sub = await self._subscription.get()
        if not sub or sub.get("can_extend_character_limit"):
            return None
        limit, used = sub.get("character_limit"), sub.get("character_count")
        if limit is None or used is None:
            return None
        return max(0, int(limit) - int(used))

    # -- SpeechProvider -------------------------------------------------------------------------

    def formats(self) -> frozenset[str]:
        return frozenset(FORMATS)

    async def voices(self) -> Sequence[VoiceInfo]:
        return list((await self._voices.get()).values())

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        voices: dict[str, VoiceInfo] = await self._voices.get()
        if voice_id is None:
            wanted = self.settings.elevenlabs_default_voice_id
            if wanted:
                return voices.get(wanted) or await self._voice(wanted)
            lang = primary_language(language)
            premade = [v for v in voices.values() if v.category == "premade"] or list(
                voices.values()
            )
            for voice in premade:
                if lang and lang in voice.languages:
                    return voice
            if premade:
                return premade[0]
            return await self._voice(FALLBACK_VOICE_ID)  # no listing: ElevenLabs' "Rachel"
        return voices.get(voice_id) or await self._voice(voice_id)

    async def _voice(self, voice_id: str) -> VoiceInfo:
        """``GET /v1/voices/{id}`` (a voice the listing does not have, e.g. just cloned);
        found voices are remembered for as long as the listing."""
        hit = self._voice_by_id.get(voice_id)
        if hit is not None and trio.current_time() - hit[0] < VOICES_TTL_S:
            return hit[1]
        try:
            voice = await self.call("voice", self._sdk.voices.get, voice_id)
        except ProviderRejected as exc:  # 400 on a malformed id
            raise UnknownVoice(f"voice {voice_id!r} does not exist") from exc
        except UnknownVoice:
            raise UnknownVoice(f"voice {voice_id!r} does not exist") from None
        info = _voice_info(voice.model_dump())
        self._voice_by_id[voice_id] = (trio.current_time(), info)
        return info

    async def prepare(
        self,
        text: str,
        voice: VoiceInfo,
        language: str | None,
        params: SpeechParams,
        preference: Preference | None = None,
    ) -> SpeechParams:
        """Settle a job's parameters at submit: the model (the request's ``model_id``; else
        by the request's ``preference``; else ``ELEVENLABS_MODEL_ID`` when it speaks the
        language; else by ``CHORUS_MODEL_PREFERENCE``), the dictionaries (request's, else the
        configured ones) pinned to their current version."""
        catalogue = await self.models()
        default = None if preference else self.settings.elevenlabs_model_id
        if default and default not in catalogue and default not in self._unknown_defaults:
            self._unknown_defaults.add(default)  # warned once; selection goes on without it
            log.warning("ELEVENLABS_MODEL_ID=%s is not a model of this account", default)
        model = pick_model(
            catalogue, language=language, characters=len(text), text=text,
            preference=preference or Preference(self.settings.model_preference),
            model_id=params.model_id or None, default_model_id=default,
        )
        refs = params.dictionaries or tuple(
            _parse_dictionary(d) for d in self.settings.elevenlabs_dictionaries
        )
        if len(refs) > MAX_DICTIONARIES:
            raise InvalidInput(f"at most {MAX_DICTIONARIES} pronunciation dictionaries")
        pinned = tuple([await self._pin(ref) for ref in refs])
        return msgspec.structs.replace(params, model_id=model.model_id, dictionaries=pinned)

    async def _pin(self, ref: DictionaryRef) -> DictionaryRef:
        if ref.version_id:
            return ref
        dict_id = ref.pronunciation_dictionary_id
        hit = self._dict_versions.get(dict_id)
        if hit is None or trio.current_time() - hit[0] > DICTIONARY_TTL_S:
            try:
                meta = await self.call(
                    "dictionary", self._sdk.pronunciation_dictionaries.get, dict_id
                )
            except (ProviderRejected, UnknownVoice) as exc:
                raise InvalidInput(
                    f"pronunciation dictionary {dict_id!r} was not found"
                ) from exc
            hit = (trio.current_time(), str(meta.latest_version_id))
            self._dict_versions[dict_id] = hit
        return DictionaryRef(pronunciation_dictionary_id=dict_id, version_id=hit[1])

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """The text in parts the model takes, each part sent with its neighbours as context,
        the clips joined. A redelivery (``previous_attempt_since``) first looks for every part
        in the account's history and downloads them instead, when all are there."""
        fmt = parse_format(request.output_format)
        catalogue = await self.models()
        params = request.params
        model = catalogue.get(params.model_id) or STATIC_MODELS.get(params.model_id)
        if model is None:  # a job from before model selection, or a model since withdrawn
            model = pick_model(catalogue, language=request.language,
                               characters=len(request.text), text=request.text)
        sent = await self._sent(request)
        parts = split_text(sent.text, model.max_chars) or [sent.text]
        if request.previous_attempt_since is not None:
            found = await self._history.recover(
                request.voice_id, [self._body(sent, model, part) for part in parts],
                request.previous_attempt_since,
            )
            if found is not None:
                try:
                    return await self._from_history(request, found, fmt)
                except ProviderError as exc:  # the parts do not join: never fail the job for it
                    log.warning("ElevenLabs history audio unusable (%s): generating instead",
                                exc.detail)
        remaining = await self.remaining_characters()
        if remaining is not None and remaining < len(request.text):
            raise ProviderQuotaExhausted(
                f"the ElevenLabs account has {remaining} characters left this period and this"
                f" job needs {len(request.text)}; it was not sent",
                remaining=remaining,
            )
        clips: list[bytes] = []
        timed: list[Mapping[str, Any] | None] = []
        ids: list[str] = []
        cost = 0
        costed = True
        for i, part in enumerate(parts):
            audio, headers, aligned = await self._convert(
                sent, model, part,
                previous_ids=ids[-MAX_CONTEXT_IDS:],
                previous_text=parts[i - 1][-CONTEXT_CHARS:] if i else None,
                next_text=parts[i + 1][:CONTEXT_CHARS] if i + 1 < len(parts) else None,
            )
            clips.append(audio)
            timed.append(aligned)
            if rid := headers.get("request-id"):
                ids.append(rid)
            try:
                cost += int(headers.get("character-cost", ""))
            except ValueError:
                costed = False
        self._chars += cost
        data, duration = await trio.to_thread.run_sync(_assemble, clips, fmt)
        return SynthesisResult(
            audio=data, content_type=fmt.content_type, duration_s=duration,
            characters=charged_characters(request.text), request_ids=tuple(ids),
            character_cost=cost if costed else None,
            alignment=await trio.to_thread.run_sync(
                _alignment, request.text, clips, timed, fmt, duration
            ),
        )

    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """``synthesize`` through the streaming endpoint, each chunk relayed to ``sink`` as it
        arrives (``protocols/providers/elevenlabs/streaming.py``)."""
        return await synthesize_streaming(self, request, sink)

    def count_characters(self, cost: int) -> None:
        """Add what a call cost to the statistics' character count."""
        self._chars += cost

    async def _from_history(
        self, request: SynthesisRequest, found: Sequence[tuple[bytes, Mapping[str, Any]]],
        fmt: Any,
    ) -> SynthesisResult:
        """The result of a redelivered job from the history items of its earlier attempt: their
        audio joined as a generation's would be, their request ids and what they cost then."""
        data, duration = await trio.to_thread.run_sync(_assemble, [a for a, _ in found], fmt)
        cost: int | None = 0
        for _, item in found:
            try:
                change = int(item["character_count_change_to"]) - int(
                    item["character_count_change_from"])
            except (KeyError, TypeError, ValueError):
                cost = None
                break
            cost = None if cost is None else cost + change
        return SynthesisResult(
            audio=data, content_type=fmt.content_type, duration_s=duration,
            characters=charged_characters(request.text),
            request_ids=tuple(str(i["request_id"]) for _, i in found if i.get("request_id")),
            character_cost=cost, from_history=True,
        )

    async def _sent(self, request: SynthesisRequest) -> SynthesisRequest:
        """The request as ElevenLabs gets it: each Chorus dictionary version as its ElevenLabs
        locator (it is mirrored there); one that is not (made before ElevenLabs was the
        provider) has its alias rules applied to the text here instead."""
        refs = request.params.dictionaries
        if not any(is_chorus_dictionary(r.pronunciation_dictionary_id) for r in refs):
            return request
        if self._lexicon is None:
            raise SynthesisFailed("the ElevenLabs provider was given no pronunciation lexicon")
        locators: list[DictionaryRef] = []
        local: list[Rule] = []
        for ref in refs:
            if not is_chorus_dictionary(ref.pronunciation_dictionary_id):
                locators.append(ref)
                continue
            version = await self._lexicon.version(ref)
            remote = version.remote(self.name)
            if remote is not None:
                locators.append(remote)
            else:
                local.extend(r for r in version.rules if isinstance(r, AliasRule))
        text = apply_rules(request.text, local).text if local else request.text
        params = msgspec.structs.replace(request.params, dictionaries=tuple(locators))
        return msgspec.structs.replace(request, text=text, params=params)

    @staticmethod
    def _body(request: SynthesisRequest, model: ModelInfo, text: str) -> dict[str, Any]:
        """What a TTS request for ``text`` sends, less the context of a split text's
        neighbours (so: what a history item can be compared with)."""
        params = request.params
        body: dict[str, Any] = {"text": text, "model_id": model.model_id,
                                "output_format": request.output_format}
        lang = primary_language(request.language)
        if lang and model.accepts_language_code:
            body["language_code"] = lang
        if params.voice_settings is not None:
            body["voice_settings"] = msgspec.to_builtins(params.voice_settings)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.dictionaries:
            body["pronunciation_dictionary_locators"] = [
                msgspec.to_builtins(d) for d in params.dictionaries
            ]
        return body

    async def _convert(
        self,
        request: SynthesisRequest,
        model: ModelInfo,
        text: str,
        *,
        previous_ids: list[str],
        previous_text: str | None,
        next_text: str | None,
    ) -> tuple[bytes, dict[str, str], Mapping[str, Any] | None]:
        """One part through ``/with-timestamps``: its audio, the response headers and its
        character alignment (over the text as sent; None if ElevenLabs gave none)."""
        kwargs = self._body(request, model, text)
        if previous_ids:
            kwargs["previous_request_ids"] = previous_ids
        elif previous_text:
            kwargs["previous_text"] = previous_text
        if next_text:
            kwargs["next_text"] = next_text

        async def once(**kw: Any) -> tuple[bytes, dict[str, str], Mapping[str, Any] | None]:
            raw = self._sdk.text_to_speech.with_raw_response
            response = await raw.convert_with_timestamps(request.voice_id, **kw)
            try:
                body = base64.b64decode(response.data.audio_base_64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProviderError("ElevenLabs returned audio that is not base64") from exc
            aligned = response.data.alignment
            return (
                body, {k.lower(): v for k, v in dict(response.headers).items()},
                None if aligned is None else {
                    "characters": aligned.characters,
                    "character_start_times_seconds": aligned.character_start_times_seconds,
                    "character_end_times_seconds": aligned.character_end_times_seconds,
                },
            )

        return await self.call("text-to-speech", once, **kwargs)


def _assemble(clips: list[bytes], fmt: Any) -> tuple[bytes, float]:
    """One clip as it came; several decoded, joined in order and encoded once (no seams).

    Audio that does not decode is kept as it came, never thrown away (it was paid for): one clip
    with an unknown duration (0.0); several clips of a format whose frames concatenate (mp3,
    headerless pcm/ulaw/alaw) joined byte by byte; anything else is a ``ProviderError``."""
    if not any(clips):
        raise ProviderError("ElevenLabs returned no audio")
    if len(clips) == 1:
        try:
            return clips[0], audio_duration(clips[0], fmt)
        except ValueError as exc:
            log.warning("could not measure the %s audio ElevenLabs returned: %s", fmt.name, exc)
            return clips[0], 0.0
    try:
        if fmt.family == "pcm":
            pcm = concat_pcm(clips, fmt.sample_rate)
        else:
            pcm = concat_pcm([decode_to_pcm(c, fmt) for c in clips], fmt.sample_rate)
        return encode_pcm(pcm, fmt.sample_rate, fmt), len(pcm) / 2 / fmt.sample_rate
    except ValueError as exc:
        if fmt.family in ("mp3", "ulaw", "alaw", "pcm"):
            log.warning("joining %d %s parts byte by byte (they do not decode: %s)",
                        len(clips), fmt.name, exc)
            return b"".join(clips), 0.0
        raise ProviderError(f"ElevenLabs returned audio that is not {fmt.name}: {exc}") from exc


def _alignment(
    text: str, clips: list[bytes], timed: list[Mapping[str, Any] | None], fmt: Any,
    duration: float,
) -> Alignment | None:
    """The clip's alignment from each part's character times, shifted by the parts before it
    (their decoded length); None when a part has none or a part's length is unknown."""
    if not timed or any(t is None for t in timed) or duration <= 0:
        return None
    chars: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    offset = 0.0
    try:
        for i, (clip, part) in enumerate(zip(clips, timed, strict=True)):
            assert part is not None
            if i:
                chars.append(" ")
                starts.append(offset)
                ends.append(offset)
            chars += part["characters"]
            starts += [offset + float(t) for t in part["character_start_times_seconds"]]
            ends += [offset + float(t) for t in part["character_end_times_seconds"]]
            if i + 1 < len(clips):
                offset += audio_duration(clip, fmt)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ElevenLabs alignment unusable (%s): the clip has none", exc)
        return None
    if not len(chars) == len(starts) == len(ends):
        return None
    try:
        said = spoken_text(text)
    except InvalidMarkup:
        said = text
    return from_characters(said, chars, starts, ends, duration)


def _parse_dictionary(text: str) -> DictionaryRef:
    dict_id, _, version = text.strip().partition(":")
    return DictionaryRef(pronunciation_dictionary_id=dict_id, version_id=version or None)


def _voice_info(raw: Mapping[str, Any]) -> VoiceInfo:
    labels = raw.get("labels") or {}
    langs: list[str] = []
    for item in raw.get("verified_languages") or ():
        code = primary_language(str((item or {}).get("language") or ""))
        if code and code not in langs:
            langs.append(code)
    label_lang = primary_language(str(labels.get("language") or ""))
    if label_lang and label_lang not in langs:
        langs.insert(0, label_lang)
    return VoiceInfo(
        voice_id=str(raw.get("voice_id")),
        name=str(raw.get("name") or raw.get("voice_id")),
        language=langs[0] if langs else "en",
        languages=tuple(langs),
        provider="elevenlabs",
        category=str(raw.get("category") or "premade"),
        description=str(raw.get("description") or ""),
    )

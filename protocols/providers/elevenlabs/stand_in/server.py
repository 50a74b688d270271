"""A fake ElevenLabs API: a real HTTP server on 127.0.0.1 in a background thread, for the tests
and ``run.py soak`` (which must not import ``tests/``; the tests import it from here).

``with FakeElevenLabs(api_key="test-key") as fake:`` then point a client (the SDK, httpx, or a
``run.py worker`` subprocess via ``ELEVENLABS_BASE_URL``) at ``fake.base_url``. Behaviour follows
``/work/shared/reference/elevenlabs.md``; knobs are plain attributes, adjustable while running;
counters are read under one lock. Routes:

- ``POST /v1/text-to-speech/{voice_id}`` and ``.../stream`` (chunked): real audio (a tone, 10 ms
  per character, capped) in the asked ``output_format``, encoded by ``protocols.domain.audio``;
  ``.../with-timestamps``: that audio as base64 with its character alignment (JSON);
  ``.../stream/with-timestamps`` (chunked): one such JSON object per line, a piece of the audio
  each with the alignment of the characters heard in it
- ``GET /v1/models``, ``GET /v1/user``, ``GET /v1/user/subscription``
- ``GET /v1/voices``, ``GET /v2/voices``, ``GET|DELETE /v1/voices/{id}``, ``POST /v1/voices/add``
  (IVC), ``POST /v1/voices/{id}/edit``, ``GET /v1/voices/{id}/settings``,
  ``GET /v1/voices/settings/default``; ``GET /previews/{id}.mp3`` (preview clips, no auth)
- pronunciation dictionaries: ``add-from-rules``, ``add-from-file``, list, get, ``PATCH``
  (name, archived), ``add-rules|remove-rules|set-rules`` (each makes a new version),
  ``{id}/{version}/download``
- the generation history: ``GET /v1/history`` (filters, pages), ``GET /v1/history/{id}`` and
  ``GET /v1/history/{id}/audio``: one item per successful TTS call (``history.py``)

Choices of this fake where the API is not documented: a cloned voice that is still processing
(or failed) answers TTS with 400 ``voice_not_ready``; an unknown model is 400 ``model_not_found``;
IVC without ``can_use_instant_voice_cloning`` is 403 ``can_not_use_instant_voice_cloning``; the
concurrency slot is released just before the audio is written (so a client that sends its next
request on receipt never races its own previous one). Characters are charged on admission, like
the real service that bills a request whose client timed out. ``GET /v2/voices`` with
``include_total_count=false`` reports the voices returned so far as ``total_count``.

Order of checks on a TTS request: stall, injected fault, ``xi-api-key``, body (422), output format,
voice, model, ``language_code`` and list lengths, text length, then concurrency (429) and quota
(401). ``TTSCall`` records fields as sent (``model_id``/``output_format`` are None when omitted);
``rejected_429`` counts concurrency rejections only, ``injected`` counts injected errors.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import math
import threading
import time
import traceback
import zlib
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.domain.audio import FORMAT_NAMES, encode_pcm, parse_format
from protocols.providers.elevenlabs.stand_in.catalog import (
    DEFAULT_MODEL,
    LANGUAGE_CODE_MODELS,
    default_models,
    premade_voices,
)
from protocols.providers.elevenlabs.stand_in.history import HistoryItem, HistoryMixin
from protocols.providers.elevenlabs.stand_in.http import (
    ApiFailure,
    ErrorShape,
    HttpThread,
    Reply,
    Request,
    error_reply,
    fail,
    json_reply,
    new_id,
    validation_failure,
)
from protocols.providers.elevenlabs.stand_in.routes import ROUTES, Dictionary, RouteMixin, Voice

TTS_PREFIX = "/v1/text-to-speech"
#: ``.../stream/with-timestamps`` sends the audio in pieces of at most this many bytes, a line each
STREAM_PIECE = 4096
_TONES_HZ = (220, 262, 330, 392, 440, 494, 523, 587)  # integer Hz: 1 s tables repeat seamlessly


@functools.lru_cache(maxsize=64)
def _tone_second(hz: int, rate: int) -> array[int]:
    """One second of an ``hz`` sine at ``rate`` (whole cycles: repeats seamlessly)."""
    return array("h", (int(6000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(rate)))


def _tone_pcm(hz: int, rate: int, samples: int) -> bytes:
    """``samples`` of s16le mono tone."""
    second = _tone_second(hz, rate)
    return (second * (samples // rate + 1))[:samples].tobytes()


def tone_hz(text: str) -> int:
    """The tone frequency the fake uses for ``text`` (so tests can tell clips apart)."""
    return _TONES_HZ[zlib.crc32(text.encode()) % len(_TONES_HZ)]


@dataclass
class TTSCall:
    """One TTS request as received (fields as sent; None when absent) and how it was answered."""

    endpoint: str  # "convert" | "stream" | "with-timestamps" | "stream-with-timestamps"
    voice_id: str
    text: str | None = None
    model_id: str | None = None
    output_format: str | None = None
    language_code: str | None = None
    seed: int | None = None
    previous_text: str | None = None
    next_text: str | None = None
    previous_request_ids: list[str] | None = None
    next_request_ids: list[str] | None = None
    pronunciation_dictionary_locators: list[dict[str, Any]] | None = None
    voice_settings: dict[str, Any] | None = None
    apply_text_normalization: str | None = None
    request_id: str | None = None  # set on success
    status: int = 0
    error_code: str | None = None
    character_cost: int = 0
    started_at: float = 0.0  # time.monotonic()
    finished_at: float = 0.0


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    shape: ErrorShape
    remaining: int | None  # None: until cleared
    path_prefix: str
    method: str | None
    headers: dict[str, str]


@dataclass
class _Stall:
    seconds: float
    remaining: int | None
    path_prefix: str


class FakeElevenLabs(RouteMixin, HistoryMixin):
    """The fake server and its state. Every knob below may be changed while it runs.

    Args:
        api_key: the only accepted ``xi-api-key`` (attribute ``api_key``).
        latency_s, latency_per_char_s: sleep per accepted TTS request (handler thread).
        concurrency_limit: TTS requests in flight before a 429.
        concurrency_error_shape: "legacy" (``status: too_many_concurrent_requests``) or
            "current" (adds ``code: concurrent_limit_exceeded``).
        character_limit, character_count: the subscription's quota and its use.
        use_model_rates: charge ``len(text) * character_cost_multiplier`` (rounded up) instead of
            ``len(text)``.
        strict_language_code: 400 for ``language_code`` sent to a model that does not take it.
        clone_ready_after_s: a new IVC voice is ready after this long (0 = at once, None = when
            ``mark_voice_ready`` is called).
        ms_per_char, max_audio_s: audio length: ``len(text) * ms_per_char`` capped.
        stream_chunk_delay_s: ``.../stream`` (and ``.../stream/with-timestamps``) sends its first
            chunk after the latency and each next one after this pause (the audio arriving as
            it is made); 0: all at once.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        latency_s: float = 0.0,
        latency_per_char_s: float = 0.0,
        concurrency_limit: int = 3,
        concurrency_error_shape: ErrorShape = "legacy",
        character_limit: int = 100_000,
        character_count: int = 0,
        use_model_rates: bool = False,
        strict_language_code: bool = True,
        tier: str = "creator",
        can_use_instant_voice_cloning: bool = True,
        voice_limit: int = 30,
        clone_ready_after_s: float | None = None,
        ms_per_char: float = 10.0,
        max_audio_s: float = 3.0,
        host: str = "127.0.0.1",
        stream_chunk_delay_s: float = 0.0,
    ) -> None:
        self.stream_chunk_delay_s = stream_chunk_delay_s
        self.api_key = api_key
        self.latency_s = latency_s
        self.latency_per_char_s = latency_per_char_s
        self.concurrency_limit = concurrency_limit
        self.concurrency_error_shape: ErrorShape = concurrency_error_shape
        self.use_model_rates = use_model_rates
        self.strict_language_code = strict_language_code
        self.tier = tier
        self.can_use_instant_voice_cloning = can_use_instant_voice_cloning
        self.voice_limit = voice_limit
        self.clone_ready_after_s = clone_ready_after_s
        self.ms_per_char = ms_per_char
        self.max_audio_s = max_audio_s
        #: Per-model override of ``maximum_text_length_per_request`` (also shown by /v1/models).
        self.model_limits: dict[str, int] = {}
        self.models: list[dict[str, Any]] = default_models()

        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._character_limit = character_limit
        self._character_count = character_count
        self._reset_at = int(time.time()) + 30 * 86400
        self._faults: list[_Fault] = []
        self._stalls: list[_Stall] = []
        self._voices: dict[str, Voice] = {}
        self._dictionaries: dict[str, Dictionary] = {}
        self._audio_cache: dict[tuple[str, int, int], bytes] = {}
        self._history: list[HistoryItem] = []
        for i, seed in enumerate(premade_voices()):
            self._voices[seed["voice_id"]] = Voice(
                voice_id=seed["voice_id"],
                name=seed["name"],
                category="premade",
                labels=seed["labels"],
                description=seed["description"],
                languages=seed["languages"],
                created_at_unix=seed["created_at_unix"] + i,
            )
        self._voice_add_edits = 0
        self.in_flight = 0
        self._reset_counters()
        self._http = HttpThread(self._app, host)
        self.host, self.port = self._http.host, self._http.port
        self.base_url = f"http://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeElevenLabs:
        """Start serving (idempotent use: call once)."""
        self._http.start()
        return self

    def close(self) -> None:
        """Stop serving; wakes sleeping handlers (stalls, latency) and drops connections."""
        self._closing.set()
        self._http.stop()

    def __enter__(self) -> FakeElevenLabs:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- knobs guarded by the lock ---------------------------------------------------------------

    @property
    def character_count(self) -> int:
        """Characters used this period (grows with every accepted TTS request)."""
        with self._lock:
            return self._character_count

    @character_count.setter
    def character_count(self, value: int) -> None:
        with self._lock:
            self._character_count = value

    @property
    def character_limit(self) -> int:
        """The subscription's character quota."""
        with self._lock:
            return self._character_limit

    @character_limit.setter
    def character_limit(self, value: int) -> None:
        with self._lock:
            self._character_limit = value

    # -- faults ----------------------------------------------------------------------------------

    def inject(
        self,
        status: int,
        code: str,
        *,
        message: str | None = None,
        times: int | None = 1,
        path_prefix: str = TTS_PREFIX,
        method: str | None = None,
        shape: ErrorShape = "current",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests (None: all, until ``clear_faults``) with
        ``status`` and error ``code`` in the given body shape, before auth and validation.
        Injected failures charge nothing. E.g. ``inject(429, "system_busy", times=2)``."""
        with self._lock:
            self._faults.append(
                _Fault(
                    status=status,
                    code=code,
                    message=message or f"Injected {code}",
                    shape=shape,
                    remaining=times,
                    path_prefix=path_prefix,
                    method=method,
                    headers=dict(headers or {}),
                )
            )

    def stall(self, seconds: float, times: int | None = 1, path_prefix: str = TTS_PREFIX) -> None:
        """Make the next ``times`` matching requests wait ``seconds`` before being handled."""
        with self._lock:
            self._stalls.append(_Stall(seconds, times, path_prefix))

    def clear_faults(self) -> None:
        """Forget pending injected errors and stalls."""
        with self._lock:
            self._faults.clear()
            self._stalls.clear()

    # -- voices and dictionaries from the test side ---------------------------------------------

    def add_voice(
        self,
        name: str,
        *,
        category: str = "cloned",
        state: str = "ready",
        labels: Mapping[str, str] | None = None,
        voice_id: str | None = None,
        description: str | None = None,
    ) -> str:
        """Add a voice directly (state ready | processing | failed); returns its id."""
        voice = Voice(
            voice_id=voice_id or new_id(),
            name=name,
            category=category,
            labels=dict(labels or {}),
            description=description,
            created_at_unix=int(time.time()),
            state=state,
        )
        with self._lock:
            self._voices[voice.voice_id] = voice
        return voice.voice_id

    def mark_voice_ready(self, voice_id: str) -> None:
        """Finish processing a cloned voice (``fine_tuning.state`` → ``fine_tuned``)."""
        with self._lock:
            voice = self._voices[voice_id]
            voice.state, voice.failure, voice.ready_at = "ready", None, None

    def mark_voice_failed(self, voice_id: str, reason: str = "Voice processing failed") -> None:
        """Fail a cloned voice (``fine_tuning.state`` → ``failed``, ``message`` = reason)."""
        with self._lock:
            voice = self._voices[voice_id]
            voice.state, voice.failure, voice.ready_at = "failed", reason, None

    def voice(self, voice_id: str) -> dict[str, Any]:
        """The Voice object the API would return for ``voice_id`` (KeyError if unknown)."""
        with self._lock:
            return self._voice_json(self._voices[voice_id])

    @property
    def voice_ids(self) -> list[str]:
        """Ids of every voice, premade first."""
        with self._lock:
            return list(self._voices)

    def add_dictionary(self, name: str, rules: list[dict[str, Any]]) -> tuple[str, str]:
        """Create a pronunciation dictionary directly; returns ``(id, version_id)``."""
        with self._lock:
            entry = self._new_dictionary(name, None, rules)
        return entry.id, entry.versions[-1][0]

    def dictionary_versions(self, dictionary_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """A dictionary's versions, oldest first: (version id, rules) (KeyError if unknown)."""
        with self._lock:
            return [(v, [dict(r) for r in rules])
                    for v, rules in self._dictionaries[dictionary_id].versions]

    def dictionary_archived(self, dictionary_id: str) -> bool:
        with self._lock:
            return self._dictionaries[dictionary_id].archived_time_unix is not None

    # -- statistics -------------------------------------------------------------------------------

    def _reset_counters(self) -> None:
        self._calls: list[TTSCall] = []
        self._endpoint_counts: Counter[str] = Counter()
        self._clone_uploads: list[dict[str, Any]] = []
        self._server_errors: list[str] = []
        self.characters_billed = 0
        self.peak_concurrency = 0
        self.rejected_429 = 0  # concurrency-limit rejections (injected 429s not included)
        self.injected = 0  # injected error replies sent
        self.stalled = 0  # requests that were stalled

    def reset_stats(self) -> None:
        """Zero the counters and records (not the quota, voices, faults or settings)."""
        with self._lock:
            self._reset_counters()

    @property
    def calls(self) -> list[TTSCall]:
        """Every TTS request so far, in arrival order of completion."""
        with self._lock:
            return list(self._calls)

    @property
    def endpoint_counts(self) -> dict[str, int]:
        """Requests per route, keyed like ``"POST /v1/text-to-speech/{voice_id}"``."""
        with self._lock:
            return dict(self._endpoint_counts)

    @property
    def clone_uploads(self) -> list[dict[str, Any]]:
        """IVC uploads: name, description, labels, remove_background_noise, files, voice_id."""
        with self._lock:
            return [dict(entry) for entry in self._clone_uploads]

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of bugs in the fake itself (answered 500); tests may assert it is empty."""
        with self._lock:
            return list(self._server_errors)

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the counters."""
        with self._lock:
            return {
                "tts_calls": len(self._calls),
                "characters_billed": self.characters_billed,
                "character_count": self._character_count,
                "peak_concurrency": self.peak_concurrency,
                "rejected_429": self.rejected_429,
                "injected": self.injected,
                "stalled": self.stalled,
                "in_flight": self.in_flight,
                "endpoints": dict(self._endpoint_counts),
            }

    # -- request pipeline -------------------------------------------------------------------------

    def _app(self, request: Request) -> Reply:
        try:
            for method, pattern, template, name, gated in ROUTES:
                match = pattern.fullmatch(request.path)
                if match is None or method != request.method:
                    continue
                with self._lock:
                    self._endpoint_counts[f"{method} {template}"] += 1
                handler = getattr(self, name)
                if gated:
                    self._gate(request)
                return handler(request, **match.groupdict())
            if any(p.fullmatch(request.path) for _, p, _, _, _ in ROUTES):
                return json_reply(405, {"detail": "Method Not Allowed"})
            return json_reply(404, {"detail": "Not Found"})
        except ApiFailure as failure:
            return failure.reply
        except Exception:
            with self._lock:
                self._server_errors.append(traceback.format_exc())
            return error_reply(500, "internal_server_error", "Internal error in the fake server")

    def _gate(self, request: Request) -> None:
        """Stalls, injected faults, then auth: in that order, for every authenticated route."""
        stall = self._take(self._stalls, request)
        if stall is not None:
            self._closing.wait(stall.seconds)
        fault = self._take(self._faults, request)
        if fault is not None:
            raise ApiFailure(
                error_reply(
                    fault.status,
                    fault.code,
                    fault.message,
                    shape=fault.shape,
                    headers=fault.headers,
                )
            )
        if request.headers.get("xi-api-key") != self.api_key:
            raise fail(401, "invalid_api_key", "Invalid API key", shape="legacy")

    def _take(self, queue: list[Any], request: Request) -> Any:
        with self._lock:
            for item in queue:
                if not request.path.startswith(item.path_prefix):
                    continue
                if getattr(item, "method", None) not in (None, request.method):
                    continue
                if item.remaining is not None:
                    item.remaining -= 1
                    if item.remaining <= 0:
                        queue.remove(item)
                if isinstance(item, _Fault):
                    self.injected += 1
                else:
                    self.stalled += 1
                return item
        return None

    # -- text to speech ----------------------------------------------------------------------------

    def _tts_convert(self, request: Request, voice_id: str) -> Reply:
        return self._tts(request, voice_id, "convert")

    def _tts_stream(self, request: Request, voice_id: str) -> Reply:
        return self._tts(request, voice_id, "stream")

    def _tts_with_timestamps(self, request: Request, voice_id: str) -> Reply:
        """The audio as base64 beside its character alignment (the text as sent, each
        character an equal share of the tone), as JSON."""
        reply = self._tts(request, voice_id, "with-timestamps")
        if reply.status != 200:
            return reply
        text = request.json()["text"]
        body = self._timed(reply.body, text, 0, len(text))
        return Reply(200, json.dumps(body).encode(), "application/json", reply.headers)

    def _tts_stream_with_timestamps(self, request: Request, voice_id: str) -> Reply:
        """The audio in pieces of at most ``STREAM_PIECE`` bytes, one JSON line each (as
        ``/with-timestamps``: ``audio_base64`` and the alignment of the characters heard in
        that piece, times from the start of the clip), sent chunked with the stream pacing."""
        reply = self._tts(request, voice_id, "stream-with-timestamps")
        if reply.status != 200:
            return reply
        text = request.json()["text"]
        audio = reply.body
        pieces = [audio[i:i + STREAM_PIECE] for i in range(0, len(audio), STREAM_PIECE)]
        lines = tuple(
            json.dumps(self._timed(piece, text, len(text) * k // len(pieces),
                                   len(text) * (k + 1) // len(pieces))).encode() + b"\n"
            for k, piece in enumerate(pieces)
        )
        return Reply(200, b"".join(lines), "application/json", reply.headers, chunked=True,
                     chunk_delay_s=self.stream_chunk_delay_s, pieces=lines)

    def _timed(self, audio: bytes, text: str, lo: int, hi: int) -> dict[str, Any]:
        """``audio`` as base64 with the alignment of ``text[lo:hi]`` (each character of the
        text an equal share of the tone's length)."""
        seconds = min(max(len(text) * self.ms_per_char / 1000, 0.05), self.max_audio_s)
        step = seconds / max(1, len(text))
        aligned = {
            "characters": list(text[lo:hi]),
            "character_start_times_seconds": [round(i * step, 3) for i in range(lo, hi)],
            "character_end_times_seconds": [round((i + 1) * step, 3) for i in range(lo, hi)],
        }
        return {"audio_base64": base64.b64encode(audio).decode(), "alignment": aligned,
                "normalized_alignment": aligned}

    def _tts(self, request: Request, voice_id: str, endpoint: str) -> Reply:
        call = _record_from(request, voice_id, endpoint)
        try:
            reply = self._synthesize(request, call)
        except ApiFailure as failure:
            reply = failure.reply
        call.status, call.error_code = reply.status, reply.error_code()
        call.finished_at = time.monotonic()
        with self._lock:
            self._calls.append(call)
        return reply

    def _synthesize(self, request: Request, call: TTSCall) -> Reply:
        self._gate(request)
        body = _validate_tts_body(request.json())
        text: str = body["text"]
        fmt_name = request.arg("output_format") or "mp3_44100_128"
        if fmt_name not in FORMAT_NAMES:
            raise fail(
                400,
                "invalid_parameters",
                f"Invalid output_format {fmt_name!r}.",
                param="output_format",
            )
        fmt = parse_format(fmt_name)
        self._check_voice(call.voice_id)
        model_id = body.get("model_id") or DEFAULT_MODEL
        model = self._tts_model(model_id)
        self._check_options(body, model_id)
        if not text.strip():
            raise fail(400, "invalid_parameters", "Text must not be empty.", param="text")
        limit = self.model_limits.get(model_id, model["maximum_text_length_per_request"])
        if len(text) > limit:
            raise fail(
                400,
                "max_character_limit_exceeded",
                f"Text is too long ({len(text)} characters). The maximum for model "
                f"{model_id} is {limit} characters.",
                param="text",
            )
        multiplier = model["model_rates"]["character_cost_multiplier"]
        cost = math.ceil(len(text) * multiplier) if self.use_model_rates else len(text)
        current, count_to = self._admit(cost)
        call.character_cost = cost
        try:
            self._closing.wait(self.latency_s + self.latency_per_char_s * len(text))
            audio = self._audio(text, fmt)
        finally:
            with self._lock:
                self.in_flight -= 1
        call.request_id = new_id(20)
        item = self._history_entry(call, body, model_id, fmt_name, audio, cost, count_to)
        self._record_history(item)
        headers = {
            "request-id": call.request_id,
            "history-item-id": item.history_item_id,
            "character-cost": str(cost),
            "current-concurrent-requests": str(current),
            "maximum-concurrent-requests": str(self.concurrency_limit),
            "tts-latency-ms": str(int((time.monotonic() - call.started_at) * 1000)),
        }
        streamed = call.endpoint == "stream"
        return Reply(200, audio, "audio/mpeg", headers, chunked=streamed,
                     chunk_delay_s=self.stream_chunk_delay_s if streamed else 0.0)

    def _history_entry(self, call: TTSCall, body: dict[str, Any], model_id: str, fmt_name: str,
                       audio: bytes, cost: int, count_to: int) -> HistoryItem:
        """The history item of a successful call: the voice settings in effect (the voice's,
        overridden by the ones sent), the character count before and after its charge."""
        with self._lock:
            voice = self._voices[call.voice_id]
            settings = {**voice.settings, **(body.get("voice_settings") or {})}
            name, category = voice.name, voice.category
        return HistoryItem(
            history_item_id=new_id(20), request_id=call.request_id or "",
            voice_id=call.voice_id, voice_name=name, voice_category=category,
            model_id=model_id, text=body["text"], date_unix=int(time.time()),
            character_count_change_from=count_to - cost, character_count_change_to=count_to,
            content_type=parse_format(fmt_name).content_type, output_format=fmt_name,
            settings=settings, audio=audio,
        )

    def _check_voice(self, voice_id: str) -> None:
        with self._lock:
            voice = self._voices.get(voice_id)
            if voice is not None:
                self._refresh(voice)
                state, failure = voice.state, voice.failure
        if voice is None:
            raise fail(
                404,
                "voice_not_found",
                f"A voice with voice_id {voice_id} was not found.",
                param="voice_id",
            )
        if state == "processing":
            raise fail(400, "voice_not_ready", f"Voice {voice_id} is still being processed.")
        if state == "failed":
            raise fail(400, "voice_not_ready", f"Voice {voice_id} failed processing: {failure}")

    def _tts_model(self, model_id: str) -> dict[str, Any]:
        model = next((m for m in self.models if m["model_id"] == model_id), None)
        if model is None:
            raise fail(
                400,
                "model_not_found",
                f"A model with model ID {model_id} does not exist.",
                param="model_id",
            )
        if not model["can_do_text_to_speech"]:
            raise fail(
                400,
                "invalid_parameters",
                f"Model {model_id} cannot do text to speech.",
                param="model_id",
            )
        return model

    def _check_options(self, body: dict[str, Any], model_id: str) -> None:
        lang = body.get("language_code")
        if lang and self.strict_language_code and model_id not in LANGUAGE_CODE_MODELS:
            raise fail(
                400,
                "invalid_parameters",
                f"Model '{model_id}' does not support the language_code {lang}.",
                param="language_code",
            )
        for key in (
            "previous_request_ids",
            "next_request_ids",
            "pronunciation_dictionary_locators",
        ):
            if len(body.get(key) or ()) > 3:
                raise fail(400, "invalid_parameters", f"{key} accepts at most 3 items.", param=key)
        for locator in body.get("pronunciation_dictionary_locators") or ():
            self._check_locator(locator)

    def _check_locator(self, locator: dict[str, Any]) -> None:
        dict_id, version = locator["pronunciation_dictionary_id"], locator.get("version_id")
        with self._lock:
            entry = self._dictionaries.get(dict_id)
            versions = [v for v, _ in entry.versions] if entry else []
        if entry is None:
            raise fail(
                404,
                "pronunciation_dictionary_not_found",
                f"Pronunciation dictionary {dict_id} not found.",
            )
        if version is not None and version not in versions:
            raise fail(
                404,
                "pronunciation_dictionary_version_not_found",
                f"Version {version} of pronunciation dictionary {dict_id} not found.",
            )

    def _admit(self, cost: int) -> tuple[int, int]:
        """Take a concurrency slot and charge ``cost``; returns requests now in flight and the
        character count after the charge."""
        with self._lock:
            if self.in_flight >= self.concurrency_limit:
                self.rejected_429 += 1
                message = (
                    f"Too many concurrent requests. Your plan allows "
                    f"{self.concurrency_limit} concurrent requests."
                )
                if self.concurrency_error_shape == "current":
                    reply = error_reply(
                        429,
                        "concurrent_limit_exceeded",
                        message,
                        legacy_status="too_many_concurrent_requests",
                    )
                else:
                    reply = error_reply(
                        429, "too_many_concurrent_requests", message, shape="legacy"
                    )
                raise ApiFailure(reply)
            if self._character_count + cost > self._character_limit:
                remaining = max(0, self._character_limit - self._character_count)
                raise fail(
                    401,
                    "quota_exceeded",
                    f"This request exceeds your quota of {self._character_limit}. You have "
                    f"{remaining} credits remaining, while {cost} credits are required "
                    "for this request.",
                    shape="legacy",
                )
            self._character_count += cost
            self.characters_billed += cost
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
            return self.in_flight, self._character_count

    def _audio(self, text: str, fmt: Any) -> bytes:
        """A tone of ``len(text) * ms_per_char`` (≥ 50 ms, ≤ max_audio_s) encoded in ``fmt``."""
        seconds = min(max(len(text) * self.ms_per_char / 1000, 0.05), self.max_audio_s)
        rate, hz = fmt.sample_rate, tone_hz(text)
        samples = round(seconds * rate)
        key = (fmt.name, samples, hz)
        with self._lock:
            cached = self._audio_cache.get(key)
        if cached is not None:
            return cached
        audio = encode_pcm(_tone_pcm(hz, rate, samples), rate, fmt)
        with self._lock:
            if len(self._audio_cache) > 256:
                self._audio_cache.clear()
            self._audio_cache[key] = audio
        return audio


_TTS_FIELDS = (
    "text",
    "model_id",
    "language_code",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "pronunciation_dictionary_locators",
    "voice_settings",
    "apply_text_normalization",
)


def _record_from(request: Request, voice_id: str, endpoint: str) -> TTSCall:
    """A call record filled from whatever the body holds (tolerant: validation comes later)."""
    call = TTSCall(
        endpoint=endpoint,
        voice_id=voice_id,
        output_format=request.arg("output_format"),
        started_at=time.monotonic(),
    )
    with contextlib.suppress(ApiFailure):
        body = request.json()
        if isinstance(body, dict):
            for key in _TTS_FIELDS:
                if body.get(key) is not None:
                    setattr(call, key, body[key])
    return call


_SETTING_RANGES = {
    "stability": (0, 1),
    "similarity_boost": (0, 1),
    "style": (0, 1),
    "speed": (0.7, 1.2),
    "clone_strength": (0, 1),
}


def _validate_tts_body(body: Any) -> dict[str, Any]:
    """Pydantic-like checks of a TTS JSON body; a 422 list of errors on failure."""
    if not isinstance(body, dict):
        raise validation_failure(
            [(("body",), "Input should be a valid dictionary", "model_attributes_type")]
        )
    errors: list[tuple[tuple[str | int, ...], str, str]] = []

    def expect(key: str, kind: type | tuple[type, ...], label: str) -> None:
        value = body.get(key)
        if value is not None and (
            not isinstance(value, kind) or isinstance(value, bool) and kind is not bool
        ):
            errors.append((("body", key), f"Input should be a valid {label}", f"{label}_type"))

    if not isinstance(body.get("text"), str):
        if "text" not in body or body["text"] is None:
            errors.append((("body", "text"), "Field required", "missing"))
        else:
            errors.append((("body", "text"), "Input should be a valid string", "string_type"))
    for key in ("model_id", "language_code", "previous_text", "next_text"):
        expect(key, str, "string")
    for key in ("previous_request_ids", "next_request_ids", "pronunciation_dictionary_locators"):
        expect(key, list, "list")
    expect("voice_settings", dict, "dictionary")
    expect("seed", int, "integer")
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= 4294967295:
        errors.append(
            (("body", "seed"), "Input should be between 0 and 4294967295", "less_than_equal")
        )
    if body.get("apply_text_normalization") not in (None, "auto", "on", "off"):
        errors.append(
            (("body", "apply_text_normalization"), "Input should be 'auto', 'on' or 'off'", "enum")
        )
    settings = body.get("voice_settings")
    if isinstance(settings, dict):
        for key, (low, high) in _SETTING_RANGES.items():
            value = settings.get(key)
            if value is not None and not (isinstance(value, int | float) and low <= value <= high):
                errors.append(
                    (
                        ("body", "voice_settings", key),
                        f"Input should be between {low} and {high}",
                        "value_error",
                    )
                )
    locators = body.get("pronunciation_dictionary_locators")
    if isinstance(locators, list):
        for i, loc in enumerate(locators):
            if not isinstance(loc, dict) or not isinstance(
                loc.get("pronunciation_dictionary_id"), str
            ):
                errors.append(
                    (
                        (
                            "body",
                            "pronunciation_dictionary_locators",
                            i,
                            "pronunciation_dictionary_id",
                        ),
                        "Field required",
                        "missing",
                    )
                )
    if errors:
        raise validation_failure(errors)
    return body

"""Audio an earlier attempt of a job already paid for, found again in the ElevenLabs history.

A job redelivered after a crash (or released after a call that timed out) may have been
generated and billed already: the process died between the provider's answer and the audio row.
ElevenLabs keeps every generation in the account's history with its text, voice, model, settings
and output format (``GET /v1/history``) and serves its audio (``GET /v1/history/{id}/audio``),
so before paying again the adapter looks there (``History.recover``) and downloads what it finds.

Matching (``matches``), for each part of the text as it would be sent now (the adapter splits a
long text; every part must be found, else the whole text is generated):

- a text-to-speech item (``source`` TTS, or none recorded) of the same text, voice and model;
- the same ``output_format`` (an item that does not record it is not used: its audio might not be
  the job's format);
- dated within the job's life: from ``since`` (when the job was created, so also an attempt whose
  provider call went before its start was recorded) less ``CLOCK_MARGIN_S`` for the two clocks,
  to now plus the margin;
- every voice setting sent is recorded on the item with the same value (settings the item records
  that were not sent were the voice's own); the other options sent (``seed``, ``language_code``,
  dictionary locators) must equal the item's where the item records them;
- of several items for one part, the newest.

Identical jobs are single-flight and cached, so within one job's life an identical item is its
own earlier generation (or one of the same audio). A look-up that fails for any reason (5xx,
timeouts, an unexpected answer) is logged and counted, and the text is generated as usual: it
never fails a job. Tried once, without the adapter's retries, so a broken history costs little.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from protocols.errors import ChorusError

log = logging.getLogger("chorus.elevenlabs.history")

CLOCK_MARGIN_S = 60  # ElevenLabs' clock against Postgres'; dates are whole seconds
PAGE_SIZE = 1000  # the most GET /v1/history gives at once
MAX_PAGES = 5  # one voice's generations over a job's life: far fewer, or give up
#: options whose value must match where an item's settings record them
OPTIONS = ("seed", "language_code", "pronunciation_dictionary_locators")


class Caller(Protocol):
    """What the lookup needs of the adapter: its SDK client and its one-try call."""

    @property
    def sdk(self) -> Any: ...
    async def call(self, what: str, fn: Callable[..., Any], *args: Any, once: bool = False,
                   **kwargs: Any) -> Any: ...


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def matches(item: Mapping[str, Any], voice_id: str, sent: Mapping[str, Any], *,
            after: int, before: int) -> bool:
    """Whether history ``item`` is the generation of one part sent as ``sent`` (the body of the
    TTS request: ``text``, ``model_id``, ``output_format``, ``voice_settings``, options) to
    ``voice_id``, dated in ``[after, before]`` (unix seconds)."""
    if item.get("source") not in (None, "TTS"):
        return False
    if item.get("text") != sent["text"] or item.get("voice_id") != voice_id:
        return False
    if item.get("model_id") != sent["model_id"]:
        return False
    if item.get("output_format") != sent["output_format"]:
        return False
    date = item.get("date_unix")
    if not isinstance(date, int) or not after <= date <= before:
        return False
    recorded = item.get("settings") or {}
    for key, value in (sent.get("voice_settings") or {}).items():
        if key not in recorded or not _same(recorded[key], value):
            return False
    return all(_same(recorded[key], sent.get(key)) for key in OPTIONS if key in recorded)


def pick(items: Sequence[Mapping[str, Any]], voice_id: str, parts: Sequence[Mapping[str, Any]],
         *, after: int, before: int) -> list[Mapping[str, Any]] | None:
    """The newest matching item for each part, or None when a part has none."""
    chosen: list[Mapping[str, Any]] = []
    for sent in parts:
        found = [i for i in items if matches(i, voice_id, sent, after=after, before=before)]
        if not found:
            return None
        chosen.append(max(found, key=lambda i: i["date_unix"]))
    return chosen


class History:
    """The history look-up of one adapter; counts what it did (``statistics``)."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self.lookups = self.reuses = self.failures = 0

    async def recover(
        self, voice_id: str, parts: Sequence[Mapping[str, Any]], since: float
    ) -> list[tuple[bytes, Mapping[str, Any]]] | None:
        """The audio and history item of every part (``sent`` bodies), generated for ``voice_id``
        since ``since`` (unix time); None when a part is not there or the look-up failed."""
        self.lookups += 1
        after = int(since) - CLOCK_MARGIN_S
        before = int(time.time()) + CLOCK_MARGIN_S
        try:
            items = await self._items(voice_id, after)
            chosen = pick(items, voice_id, parts, after=after, before=before)
            if chosen is None:
                log.info("no earlier generation of this text in the ElevenLabs history"
                         " (%d item(s) of the voice looked at): generating it", len(items))
                return None
            found = [(await self._audio(str(i["history_item_id"])), i) for i in chosen]
        except (ChorusError, ValueError, TypeError, KeyError) as exc:
            self.failures += 1
            detail = exc.detail if isinstance(exc, ChorusError) else f"{type(exc).__name__}: {exc}"
            log.warning("ElevenLabs history look-up failed (%s): generating instead", detail)
            return None
        if not all(audio for audio, _ in found):
            log.warning("an ElevenLabs history item had no audio: generating instead")
            return None
        self.reuses += 1
        log.info("reusing %d ElevenLabs history item(s) %s instead of paying again", len(found),
                 ", ".join(str(i["history_item_id"]) for _, i in found))
        return found

    async def _items(self, voice_id: str, after: int) -> list[Mapping[str, Any]]:
        sdk, items, start = self._caller.sdk, [], None
        for _ in range(MAX_PAGES):
            page = await self._caller.call(
                "history", sdk.history.list, once=True, page_size=PAGE_SIZE, voice_id=voice_id,
                date_after_unix=after, source="TTS", start_after_history_item_id=start,
            )
            items.extend(item.model_dump() for item in page.history)
            start = page.last_history_item_id
            if not page.has_more or not start:
                break
        return items

    async def _audio(self, history_item_id: str) -> bytes:
        raw = self._caller.sdk.history.with_raw_response

        async def fetch(**kwargs: Any) -> bytes:
            async with raw.get_audio(history_item_id, **kwargs) as response:
                return b"".join([chunk async for chunk in response.data])

        return await self._caller.call("history audio", fetch, once=True)

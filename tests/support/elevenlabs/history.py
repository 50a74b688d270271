"""The fake ElevenLabs server's generation history: ``GET /v1/history``, ``GET /v1/history/{id}``
and ``GET /v1/history/{id}/audio``, as the SDK (``elevenlabs.history``) calls them.

Every successful TTS call records one ``HistoryItem`` (its text, voice, model, settings, output
format, request id, date and character-count change) with the audio it answered. The listing is
newest first (``sort_direction=asc`` for oldest first), paged by ``page_size`` (default 100, at
most 1000) and ``start_after_history_item_id``, and filtered by ``voice_id``, ``model_id`` (which
needs ``source``, as documented), ``source``, ``date_after_unix`` (inclusive) and
``date_before_unix`` (exclusive). Choices of this fake where the API is not documented: ``search``
matches a case-insensitive substring of the text; the item's ``settings`` are the voice settings
in effect (the voice's own, overridden by the ones sent); an unknown history item id is 404
``history_item_not_found``; ``scanned_until`` is the date of the page's last item.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.elevenlabs.http import Reply, Request, fail, json_reply

MAX_PAGE = 1000


@dataclass
class HistoryItem:
    """One generation as the account's history keeps it (and the audio it answered)."""

    history_item_id: str
    request_id: str
    voice_id: str
    voice_name: str
    voice_category: str
    model_id: str
    text: str
    date_unix: int
    character_count_change_from: int
    character_count_change_to: int
    content_type: str
    output_format: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "TTS"
    audio: bytes = b""

    def as_json(self) -> dict[str, Any]:
        return {
            "history_item_id": self.history_item_id,
            "request_id": self.request_id,
            "voice_id": self.voice_id,
            "model_id": self.model_id,
            "voice_name": self.voice_name,
            "voice_category": self.voice_category,
            "text": self.text,
            "date_unix": self.date_unix,
            "character_count_change_from": self.character_count_change_from,
            "character_count_change_to": self.character_count_change_to,
            "content_type": self.content_type,
            "state": "created",
            "settings": dict(self.settings),
            "feedback": None,
            "share_link_id": None,
            "source": self.source,
            "alignments": None,
            "dialogue": None,
            "output_format": self.output_format,
        }


class HistoryMixin:
    """History routes and records, mixed into ``FakeElevenLabs`` (state under ``self._lock``)."""

    _lock: threading.Lock
    _history: list[HistoryItem]  # oldest first

    @property
    def history(self) -> list[HistoryItem]:
        """Every generation recorded so far, oldest first."""
        with self._lock:
            return list(self._history)

    def clear_history(self) -> None:
        """Forget every history item (as deleting them at ElevenLabs would)."""
        with self._lock:
            self._history.clear()

    def _record_history(self, item: HistoryItem) -> None:
        with self._lock:
            self._history.append(item)

    def _history_list(self, request: Request) -> Reply:
        page_size = _int_arg(request, "page_size", 100)
        if not 1 <= page_size <= MAX_PAGE:
            raise fail(400, "invalid_parameters", f"page_size must be 1..{MAX_PAGE}.",
                       param="page_size")
        model_id, source = request.arg("model_id"), request.arg("source")
        if model_id and not source:
            raise fail(400, "invalid_parameters", "source is required with model_id.",
                       param="source")
        after = _int_arg(request, "date_after_unix", None)
        before = _int_arg(request, "date_before_unix", None)
        voice_id, search = request.arg("voice_id"), (request.arg("search") or "").lower()
        with self._lock:
            items = list(self._history)
        if request.arg("sort_direction", "desc") != "asc":
            items.reverse()
        chosen = [
            item for item in items
            if (not voice_id or item.voice_id == voice_id)
            and (not model_id or item.model_id == model_id)
            and (not source or item.source == source)
            and (after is None or item.date_unix >= after)
            and (before is None or item.date_unix < before)
            and (not search or search in item.text.lower())
        ]
        start_after = request.arg("start_after_history_item_id")
        if start_after:
            ids = [item.history_item_id for item in chosen]
            if start_after not in ids:
                raise fail(400, "invalid_parameters",
                           f"History item {start_after} is not in this listing.",
                           param="start_after_history_item_id")
            chosen = chosen[ids.index(start_after) + 1:]
        page = chosen[:page_size]
        return json_reply(200, {
            "history": [item.as_json() for item in page],
            "last_history_item_id": page[-1].history_item_id if page else None,
            "has_more": len(chosen) > len(page),
            "scanned_until": page[-1].date_unix if page else None,
        })

    def _history_get(self, request: Request, history_item_id: str) -> Reply:
        return json_reply(200, self._history_item(history_item_id).as_json())

    def _history_audio(self, request: Request, history_item_id: str) -> Reply:
        item = self._history_item(history_item_id)
        return Reply(200, item.audio, item.content_type)

    def _history_item(self, history_item_id: str) -> HistoryItem:
        with self._lock:
            for item in self._history:
                if item.history_item_id == history_item_id:
                    return item
        raise fail(404, "history_item_not_found",
                   f"History item {history_item_id} was not found.")


def _int_arg(request: Request, name: str, default: int | None) -> Any:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise fail(400, "invalid_parameters", f"{name} must be an integer.", param=name) from None

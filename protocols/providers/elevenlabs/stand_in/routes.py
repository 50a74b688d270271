"""Non-TTS routes of the fake ElevenLabs server: models, user and subscription, voices (incl.
instant voice cloning) and pronunciation dictionaries, plus the route table.

``RouteMixin`` is mixed into ``FakeElevenLabs``; it only touches state under ``self._lock``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from protocols.domain.audio import parse_format
from protocols.providers.elevenlabs.stand_in.http import (
    Reply,
    Request,
    fail,
    json_reply,
    new_id,
    validation_failure,
)

#: Models a cloned voice is fine-tuned for (keys of ``fine_tuning.state``).
FINE_TUNE_MODELS = ("eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3")
DEFAULT_VOICE_SETTINGS = {
    "stability": 0.5,
    "similarity_boost": 0.75,
    "style": 0.0,
    "use_speaker_boost": True,
    "speed": 1.0,
}
_FINE_TUNING_STATE = {"ready": "fine_tuned", "processing": "fine_tuning", "failed": "failed"}
_VOICE_TYPES = {
    "default": lambda v: v.category == "premade",
    "personal": lambda v: v.category != "premade",
    "workspace": lambda v: v.category != "premade",
    "saved": lambda v: v.category != "premade",
    "non-default": lambda v: v.category != "premade",
    "community": lambda v: False,
    "non-community": lambda v: True,
}
_ID = r"(?P<{}>[^/]+)"


@dataclass
class Voice:
    """A voice as the fake stores it; ``RouteMixin._voice_json`` renders the API object."""

    voice_id: str
    name: str
    category: str
    labels: dict[str, str]
    description: str | None
    languages: tuple[str, ...] = ()
    created_at_unix: int = 0
    state: str = "ready"  # ready | processing | failed
    ready_at: float | None = None  # time.monotonic() when a processing clone becomes ready
    failure: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_VOICE_SETTINGS))


@dataclass
class Dictionary:
    """A pronunciation dictionary: every change appends a version."""

    id: str
    name: str
    description: str | None
    creation_time_unix: int
    versions: list[tuple[str, list[dict[str, Any]]]]  # (version_id, rules), oldest first
    archived_time_unix: int | None = None


def _route(method: str, template: str, handler: str, gated: bool = True) -> tuple:
    regex = template.replace(".", r"\.").replace("{op}", "(?P<op>add-rules|remove-rules|set-rules)")
    regex = re.sub(r"\{(\w+)\}", lambda m: _ID.format(m.group(1)), regex)
    return method, re.compile(regex), template, handler, gated


_DICTS = "/v1/pronunciation-dictionaries"
#: (method, path regex, template used as the counter key, handler name, gated by auth/faults)
ROUTES: list[tuple[str, re.Pattern[str], str, str, bool]] = [
    _route("POST", "/v1/text-to-speech/{voice_id}", "_tts_convert", gated=False),
    _route("POST", "/v1/text-to-speech/{voice_id}/stream", "_tts_stream", gated=False),
    _route("POST", "/v1/text-to-speech/{voice_id}/with-timestamps", "_tts_with_timestamps",
           gated=False),
    _route("POST", "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
           "_tts_stream_with_timestamps", gated=False),
    _route("GET", "/v1/models", "_models"),
    _route("GET", "/v1/user", "_user"),
    _route("GET", "/v1/user/subscription", "_subscription"),
    _route("GET", "/v1/voices", "_voices_v1"),
    _route("GET", "/v2/voices", "_voices_v2"),
    _route("GET", "/v1/voices/settings/default", "_default_settings"),
    _route("GET", "/v1/voices/{voice_id}/settings", "_voice_settings"),
    _route("GET", "/v1/voices/{voice_id}", "_voice_get"),
    _route("DELETE", "/v1/voices/{voice_id}", "_voice_delete"),
    _route("POST", "/v1/voices/add", "_voice_add"),
    _route("POST", "/v1/voices/{voice_id}/edit", "_voice_edit"),
    _route("POST", f"{_DICTS}/add-from-rules", "_dict_from_rules"),
    _route("POST", f"{_DICTS}/add-from-file", "_dict_from_file"),
    _route("GET", _DICTS, "_dict_list"),
    _route("GET", f"{_DICTS}/{{dictionary_id}}", "_dict_get"),
    _route("PATCH", f"{_DICTS}/{{dictionary_id}}", "_dict_patch"),
    _route("POST", f"{_DICTS}/{{dictionary_id}}/{{op}}", "_dict_change"),
    _route("GET", f"{_DICTS}/{{dictionary_id}}/{{version_id}}/download", "_dict_download"),
    _route("GET", "/previews/{voice_id}.mp3", "_preview", gated=False),
    _route("GET", "/v1/history", "_history_list"),  # history.py
    _route("GET", "/v1/history/{history_item_id}", "_history_get"),
    _route("GET", "/v1/history/{history_item_id}/audio", "_history_audio"),
]


class RouteMixin:
    """Handlers for everything but TTS. State lives on ``FakeElevenLabs``."""

    _lock: threading.Lock
    _voices: dict[str, Voice]
    _dictionaries: dict[str, Dictionary]
    _clone_uploads: list[dict[str, Any]]
    _character_count: int
    _character_limit: int
    _reset_at: int
    _voice_add_edits: int
    api_key: str
    base_url: str
    models: list[dict[str, Any]]
    model_limits: dict[str, int]
    tier: str
    can_use_instant_voice_cloning: bool
    voice_limit: int
    clone_ready_after_s: float | None

    def _audio(self, text: str, fmt: Any) -> bytes:
        raise NotImplementedError

    # -- models, user -----------------------------------------------------------------------------

    def _models(self, request: Request) -> Reply:
        out = []
        for model in self.models:
            model = dict(model)
            if model["model_id"] in self.model_limits:
                model["maximum_text_length_per_request"] = self.model_limits[model["model_id"]]
            out.append(model)
        return json_reply(200, out)

    def _subscription_json(self) -> dict[str, Any]:
        with self._lock:
            slots = sum(v.category != "premade" for v in self._voices.values())
            count, limit, edits = (
                self._character_count,
                self._character_limit,
                self._voice_add_edits,
            )
        return {
            "tier": self.tier,
            "character_count": count,
            "character_limit": limit,
            "max_character_limit_extension": 0,
            "can_extend_character_limit": False,
            "allowed_to_extend_character_limit": False,
            "next_character_count_reset_unix": self._reset_at,
            "voice_slots_used": slots,
            "professional_voice_slots_used": 0,
            "professional_voice_slots_used_in_workspace": 0,
            "voice_limit": self.voice_limit,
            "max_voice_add_edits": 95,
            "voice_add_edit_counter": edits,
            "professional_voice_limit": 1,
            "can_extend_voice_limit": False,
            "can_use_instant_voice_cloning": self.can_use_instant_voice_cloning,
            "can_use_professional_voice_cloning": True,
            "currency": "usd",
            "status": "active",
            "billing_period": "monthly_period",
            "character_refresh_period": "monthly_period",
            "current_overage": {"amount": "0.00", "currency": "usd"},
            "has_open_invoices": False,
        }

    def _subscription(self, request: Request) -> Reply:
        return json_reply(200, self._subscription_json())

    def _user(self, request: Request) -> Reply:
        return json_reply(
            200,
            {
                "user_id": "fakeUser0000000000000000000",
                "workspace_id": "fakeWorkspace00000000",
                "subscription": self._subscription_json(),
                "is_new_user": False,
                "xi_api_key_preview": f"{self.api_key[:3]}…",
                "is_api_key_hashed": True,
                "can_use_delayed_payment_methods": False,
                "is_onboarding_completed": True,
                "is_onboarding_checklist_completed": True,
                "first_name": "Test",
                "created_at": 1_700_000_000,
                "seat_type": "workspace_admin",
            },
        )

    # -- voices -----------------------------------------------------------------------------------

    def _refresh(self, voice: Voice) -> None:
        """Under the lock: a processing clone whose time has come becomes ready."""
        if voice.state == "processing" and voice.ready_at is not None:
            if time.monotonic() >= voice.ready_at:
                voice.state, voice.ready_at = "ready", None

    def _voice_json(self, voice: Voice) -> dict[str, Any]:
        """Under the lock: the API's Voice object."""
        self._refresh(voice)
        premade, ready = voice.category == "premade", voice.state == "ready"
        models = () if premade else FINE_TUNE_MODELS
        preview = f"{self.base_url}/previews/{voice.voice_id}.mp3" if ready else None
        accent = voice.labels.get("accent")
        return {
            "voice_id": voice.voice_id,
            "name": voice.name,
            "samples": [dict(s) for s in voice.samples] or None,
            "category": voice.category,
            "fine_tuning": {
                "is_allowed_to_fine_tune": not premade,
                "state": {m: _FINE_TUNING_STATE[voice.state] for m in models},
                "verification_failures": [],
                "verification_attempts_count": 0,
                "manual_verification_requested": False,
                "language": voice.labels.get("language", "en"),
                "progress": {m: 1.0 if ready else 0.0 for m in models},
                "message": {m: voice.failure for m in models} if voice.failure else {},
                "dataset_duration_seconds": None,
                "verification_attempts": None,
                "slice_ids": None,
                "manual_verification": None,
                "max_verification_attempts": 5,
                "next_max_verification_attempts_reset_unix_ms": None,
            },
            "labels": dict(voice.labels),
            "description": voice.description,
            "preview_url": preview,
            "available_for_tiers": [],
            "settings": dict(voice.settings),
            "sharing": None,
            "high_quality_base_model_ids": list(FINE_TUNE_MODELS) if premade else [],
            "verified_languages": [
                {
                    "language": lang,
                    "model_id": "eleven_multilingual_v2",
                    "accent": accent,
                    "locale": None,
                    "preview_url": preview,
                }
                for lang in voice.languages
            ],
            "collection_ids": [],
            "safety_control": None,
            "permission_on_resource": None if premade else "admin",
            "is_owner": not premade,
            "is_legacy": False,
            "is_mixed": False,
            "favorited_at_unix": None,
            "created_at_unix": voice.created_at_unix,
        }

    def _voice_or_404(self, voice_id: str) -> Voice:
        voice = self._voices.get(voice_id)
        if voice is None:
            raise fail(
                404,
                "voice_not_found",
                f"A voice with voice_id {voice_id} was not found.",
                param="voice_id",
            )
        return voice

    def _voices_v1(self, request: Request) -> Reply:
        with self._lock:
            voices = [self._voice_json(v) for v in self._voices.values()]
        return json_reply(200, {"voices": voices})

    def _voices_v2(self, request: Request) -> Reply:
        try:
            page_size = int(request.arg("page_size") or 10)
        except ValueError:
            raise validation_failure(
                [(("query", "page_size"), "Input should be a valid integer", "int_parsing")]
            ) from None
        if not 1 <= page_size <= 100:
            raise validation_failure(
                [(("query", "page_size"), "Input should be between 1 and 100", "less_than_equal")]
            )
        offset = _decode_token(request.arg("next_page_token"))
        voice_type, category = request.arg("voice_type"), request.arg("category")
        if voice_type and voice_type not in _VOICE_TYPES:
            raise fail(
                400, "invalid_parameters", f"Invalid voice_type {voice_type!r}.", param="voice_type"
            )
        search = (request.arg("search") or "").lower()
        wanted_ids = set(request.query.get("voice_ids", ()))
        sort = request.arg("sort") or "created_at_unix"
        descending = (request.arg("sort_direction") or "desc") == "desc"
        with self._lock:
            matches = [
                v
                for v in self._voices.values()
                if (not voice_type or _VOICE_TYPES[voice_type](v))
                and (not category or v.category == category)
                and (not wanted_ids or v.voice_id in wanted_ids)
                and (not search or search in _haystack(v))
            ]
            key = (
                (lambda v: (v.name.lower(), v.voice_id))
                if sort == "name"
                else (lambda v: (v.created_at_unix, v.voice_id))
            )
            matches.sort(key=key, reverse=descending)
            page = [self._voice_json(v) for v in matches[offset : offset + page_size]]
        end = offset + len(page)
        has_more = end < len(matches)
        include_total = (request.arg("include_total_count") or "true").lower() != "false"
        return json_reply(
            200,
            {
                "voices": page,
                "has_more": has_more,
                "total_count": len(matches) if include_total else end,
                "next_page_token": _encode_token(end) if has_more else None,
            },
        )

    def _default_settings(self, request: Request) -> Reply:
        return json_reply(200, dict(DEFAULT_VOICE_SETTINGS))

    def _voice_settings(self, request: Request, voice_id: str) -> Reply:
        with self._lock:
            return json_reply(200, dict(self._voice_or_404(voice_id).settings))

    def _voice_get(self, request: Request, voice_id: str) -> Reply:
        with self._lock:
            return json_reply(200, self._voice_json(self._voice_or_404(voice_id)))

    def _voice_delete(self, request: Request, voice_id: str) -> Reply:
        with self._lock:
            self._voice_or_404(voice_id)
            del self._voices[voice_id]
        return json_reply(200, {"status": "ok"})

    def _voice_add(self, request: Request) -> Reply:
        """IVC: multipart ``name``, repeated ``files``, ``description``, ``labels`` (JSON)."""
        form, files = request.form()
        name, uploads = form.get("name"), files.getlist("files")
        if not name:
            raise fail(400, "invalid_parameters", "Field 'name' is required.", param="name")
        if not uploads:
            raise fail(400, "invalid_parameters", "At least one file is required.", param="files")
        labels = _labels(form.get("labels"))
        samples = []
        for upload in uploads:
            data = upload.read()
            samples.append(
                {
                    "sample_id": new_id(),
                    "file_name": upload.filename or "sample",
                    "mime_type": upload.mimetype or "audio/mpeg",
                    "size_bytes": len(data),
                    "hash": hashlib.md5(data).hexdigest(),
                }
            )
        if not self.can_use_instant_voice_cloning:
            raise fail(
                403,
                "can_not_use_instant_voice_cloning",
                "Your subscription does not include instant voice cloning.",
                shape="legacy",
            )
        delay = self.clone_ready_after_s
        voice = Voice(
            voice_id=new_id(),
            name=name,
            category="cloned",
            labels=labels,
            description=form.get("description"),
            created_at_unix=int(time.time()),
            state="ready" if delay == 0 else "processing",
            ready_at=None if not delay else time.monotonic() + delay,
            samples=samples,
        )
        with self._lock:
            if sum(v.category != "premade" for v in self._voices.values()) >= self.voice_limit:
                raise fail(
                    400,
                    "voice_limit_reached",
                    f"You have reached your maximum amount of custom voices ({self.voice_limit}).",
                    shape="legacy",
                )
            self._voices[voice.voice_id] = voice
            self._voice_add_edits += 1
            self._clone_uploads.append(
                {
                    "voice_id": voice.voice_id,
                    "name": name,
                    "description": voice.description,
                    "labels": labels,
                    "labels_raw": form.get("labels"),
                    "remove_background_noise": _flag(form.get("remove_background_noise")),
                    "files": [
                        {
                            "file_name": s["file_name"],
                            "size_bytes": s["size_bytes"],
                            "content_type": s["mime_type"],
                        }
                        for s in samples
                    ],
                }
            )
        return json_reply(200, {"voice_id": voice.voice_id, "requires_verification": False})

    def _voice_edit(self, request: Request, voice_id: str) -> Reply:
        form, files = request.form()
        if not form.get("name"):
            raise fail(400, "invalid_parameters", "Field 'name' is required.", param="name")
        labels = _labels(form.get("labels")) if form.get("labels") not in (None, "null") else None
        new_samples = []
        for upload in files.getlist("files"):
            data = upload.read()
            new_samples.append(
                {
                    "sample_id": new_id(),
                    "file_name": upload.filename or "sample",
                    "mime_type": upload.mimetype or "audio/mpeg",
                    "size_bytes": len(data),
                    "hash": hashlib.md5(data).hexdigest(),
                }
            )
        with self._lock:
            voice = self._voice_or_404(voice_id)
            voice.name = form["name"]
            if form.get("description") is not None:
                voice.description = form["description"]
            if labels is not None:
                voice.labels = labels
            voice.samples.extend(new_samples)
            self._voice_add_edits += 1
        return json_reply(200, {"status": "ok"})

    def _preview(self, request: Request, voice_id: str) -> Reply:
        with self._lock:
            voice = self._voice_or_404(voice_id)
            name = voice.name
        return Reply(200, self._audio(f"Hello, I am {name}.", parse_format(None)), "audio/mpeg")

    # -- pronunciation dictionaries --------------------------------------------------------------

    def _new_dictionary(
        self, name: str, description: str | None, rules: list[dict[str, Any]]
    ) -> Dictionary:
        """Under the lock: store a new dictionary with one version."""
        entry = Dictionary(new_id(), name, description, int(time.time()), [(new_id(), rules)])
        self._dictionaries[entry.id] = entry
        return entry

    def _dict_meta(self, entry: Dictionary) -> dict[str, Any]:
        version_id, rules = entry.versions[-1]
        return {
            "id": entry.id,
            "latest_version_id": version_id,
            "latest_version_rules_num": len(rules),
            "name": entry.name,
            "permission_on_resource": "admin",
            "created_by": "fakeUser",
            "creation_time_unix": entry.creation_time_unix,
            "archived_time_unix": entry.archived_time_unix,
            "description": entry.description,
        }

    def _created(self, entry: Dictionary) -> Reply:
        version_id, rules = entry.versions[-1]
        return json_reply(
            200,
            {
                "id": entry.id,
                "name": entry.name,
                "created_by": "fakeUser",
                "creation_time_unix": entry.creation_time_unix,
                "version_id": version_id,
                "version_rules_num": len(rules),
                "description": entry.description,
                "permission_on_resource": "admin",
            },
        )

    def _dict_from_rules(self, request: Request) -> Reply:
        body = request.json()
        if not isinstance(body, dict):
            body = {}
        errors = [
            (("body", key), "Field required", "missing")
            for key in ("name", "rules")
            if body.get(key) is None
        ]
        if errors:
            raise validation_failure(errors)
        rules = _rules(body["rules"])
        with self._lock:
            entry = self._new_dictionary(str(body["name"]), body.get("description"), rules)
        return self._created(entry)

    def _dict_from_file(self, request: Request) -> Reply:
        form, files = request.form()
        if not form.get("name"):
            raise validation_failure([(("body", "name"), "Field required", "missing")])
        upload = files.get("file")
        rules = _pls_rules(upload.read()) if upload is not None else []
        with self._lock:
            entry = self._new_dictionary(form["name"], form.get("description"), rules)
        return self._created(entry)

    def _dict_list(self, request: Request) -> Reply:
        with self._lock:
            metas = [self._dict_meta(e) for e in self._dictionaries.values()]
        return json_reply(
            200, {"pronunciation_dictionaries": metas, "next_cursor": None, "has_more": False}
        )

    def _dict_or_404(self, dictionary_id: str) -> Dictionary:
        entry = self._dictionaries.get(dictionary_id)
        if entry is None:
            raise fail(
                404,
                "pronunciation_dictionary_not_found",
                f"Pronunciation dictionary {dictionary_id} not found.",
            )
        return entry

    def _dict_get(self, request: Request, dictionary_id: str) -> Reply:
        with self._lock:
            entry = self._dict_or_404(dictionary_id)
            return json_reply(
                200, {**self._dict_meta(entry), "rules": [dict(r) for r in entry.versions[-1][1]]}
            )

    def _dict_patch(self, request: Request, dictionary_id: str) -> Reply:
        """``PATCH``: ``name`` and ``archived`` (no new version: the rules stay as they are)."""
        body = request.json()
        if not isinstance(body, dict):
            raise validation_failure([(("body",), "Input should be a valid dictionary", "type")])
        with self._lock:
            entry = self._dict_or_404(dictionary_id)
            if isinstance(body.get("name"), str):
                entry.name = body["name"]
            if body.get("archived") is True:
                entry.archived_time_unix = int(time.time())
            elif body.get("archived") is False:
                entry.archived_time_unix = None
            return json_reply(200, self._dict_meta(entry))

    def _dict_change(self, request: Request, dictionary_id: str, op: str) -> Reply:
        body = request.json()
        key = "rule_strings" if op == "remove-rules" else "rules"
        if not isinstance(body, dict) or not isinstance(body.get(key), list):
            raise validation_failure([(("body", key), "Field required", "missing")])
        change = body[key] if op == "remove-rules" else _rules(body[key])
        with self._lock:
            entry = self._dict_or_404(dictionary_id)
            rules = list(entry.versions[-1][1])
            if op == "set-rules":
                rules = change
            elif op == "remove-rules":
                rules = [r for r in rules if r["string_to_replace"] not in change]
            else:
                replaced = {r["string_to_replace"] for r in change}
                rules = [r for r in rules if r["string_to_replace"] not in replaced] + change
            version_id = new_id()
            entry.versions.append((version_id, rules))
        return json_reply(
            200, {"id": dictionary_id, "version_id": version_id, "version_rules_num": len(rules)}
        )

    def _dict_download(self, request: Request, dictionary_id: str, version_id: str) -> Reply:
        with self._lock:
            versions = dict(self._dict_or_404(dictionary_id).versions)
        if version_id not in versions:
            raise fail(
                404,
                "pronunciation_dictionary_version_not_found",
                f"Version {version_id} not found.",
            )
        return Reply(200, _pls(versions[version_id]).encode(), "text/plain")


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and int(value) >= 0:
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise fail(400, "invalid_parameters", "Invalid next_page_token.", param="next_page_token")


def _haystack(voice: Voice) -> str:
    return " ".join([voice.name, voice.description or "", *voice.labels.values()]).lower()


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() in ("true", "1", "yes")


def _labels(raw: str | None) -> dict[str, str]:
    """``labels`` form field: a JSON object serialised as a string (``"null"`` = none)."""
    if raw in (None, "", "null"):
        return {}
    try:
        labels = json.loads(raw)
    except ValueError:
        labels = None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise fail(
            400, "invalid_parameters", "labels must be a JSON object of strings.", param="labels"
        )
    return labels


def _rules(value: Any) -> list[dict[str, Any]]:
    """Validated alias/phoneme rules, or a 422 list of what is wrong."""
    if not isinstance(value, list):
        raise validation_failure([(("body", "rules"), "Input should be a valid list", "list_type")])
    needs = {
        "alias": ("string_to_replace", "alias"),
        "phoneme": ("string_to_replace", "phoneme", "alphabet"),
    }
    errors, out = [], []
    for i, rule in enumerate(value):
        kind = rule.get("type") if isinstance(rule, dict) else None
        if kind not in needs:
            errors.append(
                (
                    ("body", "rules", i, "type"),
                    "Input should be 'alias' or 'phoneme'",
                    "union_tag_invalid",
                )
            )
            continue
        missing = [k for k in needs[kind] if not isinstance(rule.get(k), str)]
        errors += [(("body", "rules", i, kind, k), "Field required", "missing") for k in missing]
        if kind == "phoneme" and rule.get("alphabet") not in (None, "ipa", "cmu-arpabet"):
            errors.append(
                (
                    ("body", "rules", i, kind, "alphabet"),
                    "Input should be 'ipa' or 'cmu-arpabet'",
                    "enum",
                )
            )
        flags = {k: rule[k] for k in ("case_sensitive", "word_boundaries")
                 if isinstance(rule.get(k), bool)}
        out.append({"type": kind, **{k: rule.get(k) for k in needs[kind]}, **flags})
    if errors:
        raise validation_failure(errors)
    return out


def _pls_rules(data: bytes) -> list[dict[str, Any]]:
    """Rules from a PLS lexicon (alias or phoneme lexemes); 400 when it is not XML."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise fail(400, "invalid_parameters", f"Invalid PLS file: {exc}", param="file") from None
    alphabet = root.get("alphabet", "ipa")
    rules: list[dict[str, Any]] = []
    for lexeme in root.iter():
        if not lexeme.tag.endswith("lexeme"):
            continue
        parts = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in lexeme}
        grapheme = parts.get("grapheme", "")
        if "alias" in parts:
            rules.append({"type": "alias", "string_to_replace": grapheme, "alias": parts["alias"]})
        elif "phoneme" in parts:
            rules.append(
                {
                    "type": "phoneme",
                    "string_to_replace": grapheme,
                    "phoneme": parts["phoneme"],
                    "alphabet": alphabet,
                }
            )
    return rules


def _pls(rules: list[dict[str, Any]]) -> str:
    """A PLS lexicon for ``rules``."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" '
        'alphabet="ipa" xml:lang="en-US">',
    ]
    for rule in rules:
        body = (
            f"<alias>{escape(rule['alias'])}</alias>"
            if rule["type"] == "alias"
            else f"<phoneme>{escape(rule['phoneme'])}</phoneme>"
        )
        lines.append(
            f"  <lexeme><grapheme>{escape(rule['string_to_replace'])}</grapheme>{body}</lexeme>"
        )
    lines.append("</lexicon>")
    return "\n".join(lines) + "\n"

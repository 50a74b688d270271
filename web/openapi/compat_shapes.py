"""The JSON answers of the ElevenLabs- and OpenAI-shaped routes (``web/routes/el_*.py``,
``openai_speech.py``, ``compat_models.py``) as msgspec Structs, for the OpenAPI document only,
checked against the views by ``tests/unit/test_openapi.py`` as ``shapes.py`` is: their answers
and their two error shapes. Their request bodies are the Structs the routes decode with
(``web/compat/requests.py``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from protocols.messages import VoiceSettings


class ElevenLabsErrorDetail(msgspec.Struct, kw_only=True):
    status: str  # the stable code
    message: str


class ElevenLabsError(msgspec.Struct, kw_only=True):
    """Every error of the ElevenLabs-shaped routes (``web/compat/errors.py``)."""

    detail: ElevenLabsErrorDetail


class OpenAIErrorInfo(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(msgspec.Struct, kw_only=True):
    """Every error of the OpenAI-shaped routes (``web/compat/errors.py``)."""

    error: OpenAIErrorInfo


class CharacterTimes(msgspec.Struct, kw_only=True):
    characters: list[str]
    character_start_times_seconds: list[float]
    character_end_times_seconds: list[float]


class WithTimestamps(msgspec.Struct, kw_only=True):
    """``/with-timestamps``: the clip (base64) and when each character is heard."""

    audio_base64: str
    alignment: CharacterTimes
    normalized_alignment: CharacterTimes


class ElevenLabsVoice(msgspec.Struct, kw_only=True):
    """A voice in ElevenLabs' shape (``web.routes.el_account.el_voice``)."""

    voice_id: str
    name: str
    category: str | None
    labels: dict[str, str]
    description: str | None
    preview_url: str | None
    settings: VoiceSettings
    verified_languages: list[dict[str, str]]
    is_owner: bool
    created_at_unix: int
    available_for_tiers: list[str]
    high_quality_base_model_ids: list[str]


class ElevenLabsVoices(msgspec.Struct, kw_only=True):
    voices: list[ElevenLabsVoice]
    has_more: bool
    total_count: int
    next_page_token: str | None


class Overage(msgspec.Struct, kw_only=True):
    amount: float
    currency: str


class Subscription(msgspec.Struct, kw_only=True):
    """The caller's quota as ElevenLabs' subscription (``el_account.subscription``)."""

    tier: str
    status: str
    character_count: int
    character_limit: int
    next_character_count_reset_unix: int
    can_extend_character_limit: bool
    allowed_to_extend_character_limit: bool
    max_credit_limit_extension: int
    max_character_limit_extension: int
    voice_slots_used: int
    professional_voice_slots_used: int
    professional_voice_slots_used_in_workspace: int
    voice_limit: int
    voice_add_edit_counter: int
    professional_voice_limit: int
    can_extend_voice_limit: bool
    can_use_instant_voice_cloning: bool
    can_use_professional_voice_cloning: bool
    current_overage: Overage
    character_refresh_period: str


class ElevenLabsUser(msgspec.Struct, kw_only=True):
    user_id: str
    first_name: str
    workspace_id: str
    subscription: Subscription
    is_new_user: bool
    can_use_delayed_payment_methods: bool
    is_onboarding_completed: bool
    is_onboarding_checklist_completed: bool
    created_at: int
    seat_type: str
    is_api_key_hashed: bool


class HistoryItem(msgspec.Struct, kw_only=True):
    """A succeeded job as an ElevenLabs history item (``el_account.history_item``)."""

    history_item_id: str
    request_id: str
    voice_id: str
    voice_name: str
    model_id: str | None
    text: str
    date_unix: int
    character_count_change_from: int
    character_count_change_to: int
    content_type: str
    output_format: str
    state: str
    source: str
    settings: VoiceSettings | None


class History(msgspec.Struct, kw_only=True):
    history: list[HistoryItem]
    has_more: bool
    last_history_item_id: str | None


class ModelLanguage(msgspec.Struct, kw_only=True):
    language_id: str
    name: str


class ElevenLabsModel(msgspec.Struct, kw_only=True):
    """``GET /v1/models`` with ``xi-api-key`` (``compat_models.el_models``)."""

    model_id: str
    name: str
    can_do_text_to_speech: bool
    can_do_voice_conversion: bool
    can_be_finetuned: bool
    can_use_style: bool
    can_use_speaker_boost: bool
    serves_pro_voices: bool
    requires_alpha_access: bool
    token_cost_factor: float
    description: str
    maximum_text_length_per_request: int
    max_characters_request_free_user: int
    max_characters_request_subscribed_user: int
    languages: list[ModelLanguage]


class OpenAIModel(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModels(msgspec.Struct, kw_only=True):
    """``GET /v1/models`` with a bearer key, ``GET /openai/v1/models``."""

    object: Literal["list"]
    data: list[OpenAIModel]

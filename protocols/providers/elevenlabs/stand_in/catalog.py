"""Static data for the fake ElevenLabs server: models, languages and premade voices.

Shapes follow the SDK types (``types/model.py``, ``types/voice.py``) and the reference
(``/work/shared/reference/elevenlabs.md`` §1.3, §3). Language ids are ISO 639-1 where one exists
(``language_code`` in a TTS request is ISO 639-1); ``ceb`` (Cebuano) has none.
The premade voice ids are the public ids of ElevenLabs' default voices.
"""

from __future__ import annotations

from typing import Any

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "ja": "Japanese", "zh": "Chinese", "de": "German", "hi": "Hindi",
    "fr": "French", "ko": "Korean", "pt": "Portuguese", "it": "Italian", "es": "Spanish",
    "id": "Indonesian", "nl": "Dutch", "tr": "Turkish", "fil": "Filipino", "pl": "Polish",
    "sv": "Swedish", "bg": "Bulgarian", "ro": "Romanian", "ar": "Arabic", "cs": "Czech",
    "el": "Greek", "fi": "Finnish", "hr": "Croatian", "ms": "Malay", "sk": "Slovak",
    "da": "Danish", "ta": "Tamil", "uk": "Ukrainian", "ru": "Russian",
    "hu": "Hungarian", "no": "Norwegian", "vi": "Vietnamese",
    "af": "Afrikaans", "hy": "Armenian", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "ceb": "Cebuano",
    "ny": "Chichewa", "et": "Estonian", "gl": "Galician", "ka": "Georgian", "gu": "Gujarati",
    "ha": "Hausa", "he": "Hebrew", "is": "Icelandic", "ga": "Irish", "jv": "Javanese",
    "kn": "Kannada", "kk": "Kazakh", "ky": "Kyrgyz", "lv": "Latvian", "ln": "Lingala",
    "lt": "Lithuanian", "lb": "Luxembourgish", "mk": "Macedonian", "ml": "Malayalam",
    "mr": "Marathi", "ne": "Nepali", "ps": "Pashto", "fa": "Persian", "pa": "Punjabi",
    "sr": "Serbian", "sd": "Sindhi", "sl": "Slovenian", "so": "Somali", "sw": "Swahili",
    "te": "Telugu", "th": "Thai",
}  # fmt: skip

_ALL = tuple(LANGUAGE_NAMES)
MULTILINGUAL_V2_LANGS: tuple[str, ...] = _ALL[:29]
FLASH_V2_5_LANGS: tuple[str, ...] = _ALL[:32]  # the 29 + hu, no, vi
V3_LANGS: tuple[str, ...] = _ALL  # 72, incl. ones only v3 has (he, th, sr, ...)

#: Models that accept ``language_code`` (reference §1.1: others answered 400).
LANGUAGE_CODE_MODELS: frozenset[str] = frozenset(
    {"eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3"}
)
DEFAULT_MODEL = "eleven_multilingual_v2"


def _model(
    model_id: str,
    name: str,
    description: str,
    *,
    limit: int | None,
    langs: tuple[str, ...],
    tts: bool = True,
    sts: bool = False,
    group: str = "standard",
    multiplier: float = 1.0,
    style: bool = True,
    alpha: bool = False,
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "name": name,
        "description": description,
        "can_be_finetuned": tts,
        "can_do_text_to_speech": tts,
        "can_do_voice_conversion": sts,
        "can_use_style": style,
        "can_use_speaker_boost": True,
        "serves_pro_voices": False,
        "token_cost_factor": 1.0,
        "requires_alpha_access": alpha,
        "max_characters_request_free_user": limit or 0,  # deprecated upstream, not enforced
        "max_characters_request_subscribed_user": limit or 0,
        "maximum_text_length_per_request": limit or 0,
        "languages": [{"language_id": code, "name": LANGUAGE_NAMES[code]} for code in langs],
        "model_rates": {"character_cost_multiplier": multiplier, "cost_discount_multiplier": 1.0},
        "concurrency_group": group,
    }


def default_models() -> list[dict[str, Any]]:
    """A fresh copy of the model catalogue (``GET /v1/models``), limits as documented."""
    return [
        _model("eleven_v3", "Eleven v3", "Most expressive model, 70+ languages, audio tags.",
               limit=5000, langs=V3_LANGS),
        _model("eleven_multilingual_v2", "Eleven Multilingual v2",
               "Most stable on long-form generations, 29 languages.",
               limit=10000, langs=MULTILINGUAL_V2_LANGS),
        _model("eleven_flash_v2_5", "Eleven Flash v2.5", "Ultra-low latency, 32 languages.",
               limit=40000, langs=FLASH_V2_5_LANGS, group="turbo", multiplier=0.5, style=False),
        _model("eleven_turbo_v2_5", "Eleven Turbo v2.5", "Low latency, 32 languages.",
               limit=40000, langs=FLASH_V2_5_LANGS, group="turbo", multiplier=0.5, style=False),
        _model("eleven_flash_v2", "Eleven Flash v2", "Ultra-low latency, English only.",
               limit=30000, langs=("en",), group="turbo", multiplier=0.5, style=False),
        _model("eleven_turbo_v2", "Eleven Turbo v2", "Low latency, English only.",
               limit=30000, langs=("en",), group="turbo", multiplier=0.5, style=False),
        _model("eleven_multilingual_sts_v2", "Eleven Multilingual v2 (speech to speech)",
               "Speech to speech in 29 languages.", limit=None, langs=MULTILINGUAL_V2_LANGS,
               tts=False, sts=True),
    ]  # fmt: skip


def _premade(
    voice_id: str,
    name: str,
    *,
    gender: str,
    accent: str,
    age: str,
    descriptive: str,
    use_case: str,
    languages: tuple[str, ...] = ("en",),
    created: int = 1_700_000_000,
) -> dict[str, Any]:
    return {
        "voice_id": voice_id,
        "name": name,
        "category": "premade",
        "labels": {
            "accent": accent, "descriptive": descriptive, "age": age, "gender": gender,
            "language": languages[0], "use_case": use_case,
        },
        "description": f"{age.replace('_', ' ').title()} {accent} {gender} voice, {descriptive}.",
        "languages": languages,
        "created_at_unix": created,
    }  # fmt: skip


def premade_voices() -> list[dict[str, Any]]:
    """Seed data for the premade voices (expanded into Voice objects by the server)."""
    return [
        _premade("21m00Tcm4TlvDq8ikWAM", "Rachel", gender="female", accent="american",
                 age="young", descriptive="calm", use_case="narrative_story"),
        _premade("pNInz6obpgDQGcFmaJgB", "Adam", gender="male", accent="american",
                 age="middle_aged", descriptive="deep", use_case="narrative_story"),
        _premade("EXAVITQu4vr4xnSDxMaL", "Sarah", gender="female", accent="american",
                 age="young", descriptive="professional", use_case="entertainment_tv",
                 languages=("en", "fr", "de", "ko")),
        _premade("ErXwobaYiN019PkySvjV", "Antoni", gender="male", accent="american",
                 age="young", descriptive="well-rounded", use_case="narrative_story",
                 languages=("en", "es", "it")),
        _premade("TxGEqnHWrfWFTfGW9XjX", "Josh", gender="male", accent="american",
                 age="young", descriptive="deep", use_case="narrative_story"),
        _premade("MF3mGyEYCl7XYWbV9V6O", "Elli", gender="female", accent="american",
                 age="young", descriptive="emotional", use_case="narrative_story"),
        _premade("yoZ06aMxZJJ28mfd3POQ", "Sam", gender="male", accent="american",
                 age="young", descriptive="raspy", use_case="narrative_story"),
        _premade("AZnzlk1XvdvUeBnXmlld", "Domi", gender="female", accent="american",
                 age="young", descriptive="strong", use_case="narrative_story",
                 languages=("en", "ja", "ko")),
    ]  # fmt: skip

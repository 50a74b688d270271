"""ElevenLabs models: a static catalogue (reference/elevenlabs.md §3), overridden by the live
``GET /v1/models``, and the rule that picks a model for a job.

Pure functions and data: no I/O here (the adapter refreshes the catalogue).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import msgspec

from protocols.errors import InvalidInput, UnsupportedLanguage


class Preference(StrEnum):
    """What a job cares about most when no ``model_id`` is given."""

    balanced = "balanced"  # Flash, or Multilingual v2 for numbers and dates it reads better
    latency = "latency"  # eleven_flash_v2_5
    quality = "quality"  # eleven_multilingual_v2
    expressive = "expressive"  # eleven_v3


FLASH = "eleven_flash_v2_5"
MULTILINGUAL = "eleven_multilingual_v2"
V3 = "eleven_v3"

V2_LANGS = frozenset(
    "en ja zh de hi fr ko pt it es id nl tr fil pl sv bg ro ar cs el fi hr ms sk da ta uk ru"
    .split()
)
FLASH25_LANGS = V2_LANGS | {"hu", "no", "vi"}
#: v3 adds these (ISO 639-1 where one exists; the live catalogue is authoritative)
V3_EXTRA = frozenset(
    "af hy as az be bn bs ca ceb ny et gl ka gu ha he is ga jv kn kk ky lv ln lt lb mk ml mr ne"
    " ps fa pa sr sd sl so sw te th".split()
)
V3_LANGS = FLASH25_LANGS | V3_EXTRA

#: ISO 639-3 (or other) ids the live catalogue may use -> our ISO 639-1 codes
_ALIASES = {
    "afr": "af", "hye": "hy", "asm": "as", "aze": "az", "bel": "be", "ben": "bn", "bos": "bs",
    "cat": "ca", "nya": "ny", "est": "et", "glg": "gl", "kat": "ka", "guj": "gu", "hau": "ha",
    "heb": "he", "isl": "is", "gle": "ga", "jav": "jv", "kan": "kn", "kaz": "kk", "kir": "ky",
    "lav": "lv", "lin": "ln", "lit": "lt", "ltz": "lb", "mkd": "mk", "mal": "ml", "mar": "mr",
    "nep": "ne", "pus": "ps", "fas": "fa", "pan": "pa", "srp": "sr", "snd": "sd", "slv": "sl",
    "som": "so", "swa": "sw", "tel": "te", "tha": "th", "iw": "he", "nb": "no", "tl": "fil",
    "cmn": "zh", "eng": "en", "kor": "ko", "jpn": "ja",
}
#: models that accept ``language_code`` (others answered 400 to it, or ignore it)
LANGUAGE_CODE_MODELS = frozenset({FLASH, "eleven_turbo_v2_5", V3})


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    max_chars: int
    languages: frozenset[str]  # empty: unknown (not checked)
    accepts_language_code: bool = False


STATIC_MODELS: dict[str, ModelInfo] = {
    m.model_id: m
    for m in (
        ModelInfo(model_id=V3, max_chars=5000, languages=V3_LANGS, accepts_language_code=True),
        ModelInfo(model_id=MULTILINGUAL, max_chars=10000, languages=V2_LANGS),
        ModelInfo(model_id=FLASH, max_chars=40000, languages=FLASH25_LANGS,
                  accepts_language_code=True),
        ModelInfo(model_id="eleven_turbo_v2_5", max_chars=40000, languages=FLASH25_LANGS,
                  accepts_language_code=True),
        ModelInfo(model_id="eleven_flash_v2", max_chars=30000, languages=frozenset({"en"})),
        ModelInfo(model_id="eleven_turbo_v2", max_chars=30000, languages=frozenset({"en"})),
    )
}


def primary_language(language: str | None) -> str | None:
    """``"ko-KR"`` -> ``"ko"``; ISO 639-3 ids -> 639-1 where we know one; None stays None."""
    if not language:
        return None
    head = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return _ALIASES.get(head, head) or None


def catalogue_from_api(models: Iterable[Mapping[str, Any]]) -> dict[str, ModelInfo]:
    """``GET /v1/models`` -> the TTS models, with the static table filling what it omits."""
    out: dict[str, ModelInfo] = {}
    for raw in models:
        model_id = str(raw.get("model_id") or "")
        if not model_id or not raw.get("can_do_text_to_speech", False):
            continue
        static = STATIC_MODELS.get(model_id)
        limit = raw.get("maximum_text_length_per_request")
        langs = frozenset(
            code
            for item in raw.get("languages") or ()
            if (code := primary_language(str(item.get("language_id", ""))))
        )
        out[model_id] = ModelInfo(
            model_id=model_id,
            max_chars=int(limit) if limit else (static.max_chars if static else 5000),
            languages=langs or (static.languages if static else frozenset()),
            accepts_language_code=model_id in LANGUAGE_CODE_MODELS,
        )
    return out


_NUMBERS = re.compile(r"\d")


def pick_model(
    catalogue: Mapping[str, ModelInfo],
    *,
    language: str | None,
    characters: int,
    text: str = "",
    preference: Preference = Preference.balanced,
    model_id: str | None = None,
    default_model_id: str | None = None,
) -> ModelInfo:
    """The model for one job. An explicit ``model_id`` wins (it must exist and speak the
    language). Then ``default_model_id`` (``ELEVENLABS_MODEL_ID``) when the catalogue has it
    and it speaks the language. Otherwise by preference, language support and length; a
    language that only one model speaks gets that model. Raises ``InvalidInput`` /
    ``UnsupportedLanguage``."""
    lang = primary_language(language)

    def speaks(model: ModelInfo) -> bool:
        return lang is None or not model.languages or lang in model.languages

    if model_id:
        model = catalogue.get(model_id)
        if model is None:
            known = ", ".join(sorted(catalogue))
            raise InvalidInput(f"unknown model_id {model_id!r}; known: {known}",
                               models=sorted(catalogue))
        if not speaks(model):
            raise UnsupportedLanguage(f"model {model_id} does not speak {language!r}")
        return model

    def usable(mid: str) -> ModelInfo | None:
        model = catalogue.get(mid)
        return model if model is not None and speaks(model) else None

    if default_model_id and (model := usable(default_model_id)) is not None:
        return model

    order: list[str] = []
    if preference == Preference.expressive:
        order.append(V3)
    if preference == Preference.quality:
        order.append(MULTILINGUAL)
    if preference == Preference.balanced and _NUMBERS.search(text):
        multi = catalogue.get(MULTILINGUAL)
        if multi is not None and characters <= multi.max_chars:
            order.append(MULTILINGUAL)  # reads numbers, dates and phone numbers best
    order += [FLASH, MULTILINGUAL, V3]
    for mid in order:
        if (model := usable(mid)) is not None:
            return model
    # a language only some other model covers
    for model in sorted(catalogue.values(), key=lambda m: -m.max_chars):
        if lang is not None and lang in model.languages:
            return model
    raise UnsupportedLanguage(
        f"no ElevenLabs model speaks {language!r}", language=language
    )

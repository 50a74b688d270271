"""Which ElevenLabs history items count as an earlier attempt's generation of a job's text
(``protocols/providers/elevenlabs/history.py``): the rules that decide between reusing paid
audio and paying again."""

from __future__ import annotations

from typing import Any

import pytest

from protocols.providers.elevenlabs.history import matches, pick

VOICE = "21m00Tcm4TlvDq8ikWAM"
NOW = 1_800_000_000
WINDOW = dict(after=NOW - 120, before=NOW + 60)


def sent(text: str = "Hello there.", **extra: Any) -> dict[str, Any]:
    body = {"text": text, "model_id": "eleven_flash_v2_5", "output_format": "mp3_44100_128"}
    body.update(extra)
    return body


def item(text: str = "Hello there.", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "history_item_id": f"h-{text}-{fields.get('date_unix', NOW)}", "request_id": "r1",
        "voice_id": VOICE, "model_id": "eleven_flash_v2_5", "text": text, "date_unix": NOW,
        "output_format": "mp3_44100_128", "source": "TTS",
        "settings": {"stability": 0.5, "similarity_boost": 0.75, "use_speaker_boost": True},
    }
    base.update(fields)
    return base


def test_the_same_text_voice_model_and_format_in_the_window_matches():
    assert matches(item(), VOICE, sent(), **WINDOW)


@pytest.mark.parametrize(("field", "value"), [
    ("text", "Hello there!"),  # one character differs
    ("voice_id", "another-voice"),
    ("model_id", "eleven_multilingual_v2"),
    ("output_format", "mp3_22050_32"),  # same content type, another encoding
    ("output_format", None),  # not recorded: its format is unknown
    ("source", "STS"),  # speech to speech, not a generation of this text
    ("date_unix", NOW - 121),  # before the job existed (less the clock margin)
    ("date_unix", NOW + 61),  # after now (plus the margin)
    ("date_unix", None),
])
def test_an_item_that_differs_in_what_shapes_the_audio_does_not_match(field, value):
    assert not matches(item(**{field: value}), VOICE, sent(), **WINDOW)


def test_the_window_edges_are_inclusive():
    assert matches(item(date_unix=NOW - 120), VOICE, sent(), **WINDOW)
    assert matches(item(date_unix=NOW + 60), VOICE, sent(), **WINDOW)


def test_every_voice_setting_sent_must_be_recorded_with_the_same_value():
    assert matches(item(), VOICE, sent(voice_settings={"stability": 0.5}), **WINDOW)
    assert matches(item(), VOICE, sent(voice_settings={"stability": 0.5 + 1e-12}), **WINDOW)
    assert not matches(item(), VOICE, sent(voice_settings={"stability": 0.6}), **WINDOW)
    assert not matches(item(), VOICE, sent(voice_settings={"speed": 1.1}), **WINDOW)  # unknown
    assert not matches(item(), VOICE, sent(voice_settings={"use_speaker_boost": False}), **WINDOW)
    assert not matches(item(settings=None), VOICE, sent(voice_settings={"stability": 0.5}),
                       **WINDOW)
    # no settings sent: the voice's own were used, whatever the item recorded
    assert matches(item(settings={"stability": 0.9}), VOICE, sent(), **WINDOW)


def test_options_are_compared_only_where_the_item_records_them():
    seeded = item(settings={"stability": 0.5, "seed": 7, "language_code": "en"})
    assert matches(seeded, VOICE, sent(seed=7, language_code="en"), **WINDOW)
    assert not matches(seeded, VOICE, sent(seed=8, language_code="en"), **WINDOW)
    assert not matches(seeded, VOICE, sent(language_code="en"), **WINDOW)  # no seed sent
    assert matches(item(), VOICE, sent(seed=8), **WINDOW)  # the item does not say: not a reason
    locators = [{"pronunciation_dictionary_id": "d1", "version_id": "v2"}]
    with_dict = item(settings={"pronunciation_dictionary_locators": locators})
    assert matches(with_dict, VOICE, sent(pronunciation_dictionary_locators=locators), **WINDOW)
    other = [{"pronunciation_dictionary_id": "d1", "version_id": "v3"}]
    assert not matches(with_dict, VOICE, sent(pronunciation_dictionary_locators=other),
                       **WINDOW)


def test_every_part_needs_an_item_and_the_newest_wins():
    parts = [sent("Part one."), sent("Part two.")]
    older, newer = item("Part one.", date_unix=NOW - 30), item("Part one.", date_unix=NOW - 5)
    two = item("Part two.", date_unix=NOW - 4)
    chosen = pick([newer, two, older], VOICE, parts, **WINDOW)
    assert chosen == [newer, two]
    assert pick([newer, older], VOICE, parts, **WINDOW) is None  # part two never generated
    assert pick([], VOICE, [sent()], **WINDOW) is None

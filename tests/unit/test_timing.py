"""The SSML subset (protocols/domain/ssml.py), the alignment maths (protocols/domain/timing.py),
word cues (protocols/domain/captions.py), and each provider's alignment: espeak-ng's word
events, Piper's spread, the fake's, ElevenLabs' parts joined."""

from __future__ import annotations

import io

import pytest
import srt
import trio
import webvtt

from protocols.dictionaries import PhonemeRule
from protocols.domain.audio import encode_pcm, parse_format, silence
from protocols.domain.captions import cues_srt, cues_vtt, word_cues
from protocols.domain.ssml import (
    MAX_BREAK_S,
    Hint,
    InvalidMarkup,
    Pause,
    Text,
    charged_characters,
    parse,
    spoken_text,
)
from protocols.domain.timing import Run, alignment, even_words, from_characters, plan
from protocols.messages import SynthesisRequest, WordTiming
from protocols.providers import piper
from protocols.providers.elevenlabs.provider import _alignment as elevenlabs_alignment
from protocols.providers.espeak import EspeakProvider, _Event, _word_times
from protocols.providers.fake import CLIP_S, FakeProvider

# --- the SSML subset ---------------------------------------------------------------------------


def test_breaks_in_milliseconds_and_seconds_become_pauses() -> None:
    assert parse('One <break time="500ms"/> two <break time=\'1.5s\' /> three') == [
        Text("One "), Pause(0.5), Text(" two "), Pause(1.5), Text(" three"),
    ]
    assert spoken_text('One<break time="2s"/>two') == "One two"


def test_a_phoneme_hint_keeps_its_word_and_speak_tags_are_dropped() -> None:
    text = '<speak>Say <phoneme alphabet="cmu-arpabet" ph="T AH0 M EY1 T OW2">tomato</phoneme>.'
    assert parse(text + "</speak>") == [
        Text("Say "), Hint("tomato", "T AH0 M EY1 T OW2", "cmu-arpabet"), Text("."),
    ]
    assert spoken_text(text) == "Say tomato."
    assert parse('<phoneme ph="p&amp;q">x</phoneme>') == [Hint("x", "p&q", "ipa")]


@pytest.mark.parametrize("text", [
    "a < b and b > c", "I <3 you", "<b>bold</b>", "<breakfast> is served", "x<y",
    "<phonemes are units>", "</break",
])
def test_other_angle_brackets_are_text(text: str) -> None:
    assert parse(text) == [Text(text)]
    assert spoken_text(text) == text and charged_characters(text) == len(text)


@pytest.mark.parametrize("text", [
    f'Wait <break time="{MAX_BREAK_S + 0.5}s"/> now',
    'Wait <break time="4000ms"/> now',
    'Wait <break time="soon"/> now',
    "Wait <break/> now",
    'Wait <break time="1s"> now',
    'Say <phoneme alphabet="ipa">tomato</phoneme>',
    'Say <phoneme alphabet="ipa" ph="x">tomato',
    'Say <phoneme alphabet="klingon" ph="x">tomato</phoneme>',
    'Say <phoneme ph="x"></phoneme>',
    "Say tomato</phoneme>",
    '<break time="1s"/>' * 51 + "done",
])
def test_bad_markup_is_a_typed_422(text: str) -> None:
    with pytest.raises(InvalidMarkup) as caught:
        parse(text)
    assert caught.value.status == 422 and caught.value.code == "invalid_markup"


def test_markup_is_not_charged() -> None:
    text = 'Hello <break time="1s"/> <phoneme ph="wɜːld">world</phoneme>'
    assert charged_characters(text) == len("Hello world")


# --- engine input plans -------------------------------------------------------------------------


def test_plan_maps_every_word_to_what_the_engine_reads() -> None:
    steps = plan(
        'Say [[x]] <phoneme ph="h">hello</phoneme> now <break time="1s"/> bye',
        render=lambda rule: f"[[{rule.phoneme}]]", escape=lambda t: t.replace("[[", "[ ["),
    )
    first, pause, last = steps
    assert isinstance(first, Run) and pause == Pause(1.0) and isinstance(last, Run)
    assert first.phonemes and not last.phonemes
    assert [(g.words, first.sent[g.start:g.end]) for g in first.groups] == [
        (("Say",), "Say"), (("[[x]]",), "[ [x]]"), (("hello",), "[[h]]"), (("now",), "now"),
    ]
    assert [g.words for g in last.groups] == [("bye",)]


def test_a_dictionary_rewrite_keeps_the_users_words_as_one_group() -> None:
    (run,) = plan("Dr. Who is here", render=lambda rule: None, escape=lambda t: t,
                  apply=lambda t: (t.replace("Dr.", "Doctor"), False))
    (group,) = run.groups
    assert group.words == ("Dr.", "Who", "is", "here")
    assert run.sent[group.start:group.end] == "Doctor Who is here"


# --- alignment maths ----------------------------------------------------------------------------


def test_alignment_from_words_is_monotonic_and_within_the_clip() -> None:
    words = [WordTiming(text="Hi,", start_s=0.1, end_s=0.5),
             WordTiming(text="you", start_s=0.4, end_s=3.0)]  # overlapping, past the end
    out = alignment("Hi, you", words, 1.0)
    assert out.words == (WordTiming(text="Hi,", start_s=0.1, end_s=0.5),
                         WordTiming(text="you", start_s=0.5, end_s=1.0))
    assert "".join(out.characters) == "Hi, you"
    assert out.character_start_times_seconds[:3] == (0.1, 0.233, 0.367)
    assert out.character_start_times_seconds[3] == 0.5  # the space: the gap between words
    starts, ends = out.character_start_times_seconds, out.character_end_times_seconds
    assert list(starts) == sorted(starts) and list(ends) == sorted(ends)
    assert ends[-1] == 1.0


def test_even_words_fill_the_clip_by_length() -> None:
    words = even_words("a bbb", 0.4)
    assert [(w.text, w.start_s, w.end_s) for w in words] == [("a", 0.0, 0.1), ("bbb", 0.1, 0.4)]


def test_character_times_over_sent_text_skip_markup_and_keep_the_providers_times() -> None:
    sent = 'a <break time="1s"/> b'
    step = 0.1
    chars = list(sent)
    starts = [i * step for i in range(len(sent))]
    ends = [(i + 1) * step for i in range(len(sent))]
    out = from_characters("a b", chars, starts, ends, 5.0)
    assert [(w.text, w.start_s) for w in out.words] == [("a", 0.0), ("b", round(21 * step, 3))]
    assert out.character_start_times_seconds == (0.0, 0.1, 2.1)
    # a word the provider was not sent as written gets no time of its own
    out = from_characters("a z", list("a b"), [0, 0.1, 0.2], [0.1, 0.2, 0.3], 1.0)
    assert [(w.text, w.start_s, w.end_s) for w in out.words] == [("a", 0, 0.1), ("z", 0.1, 0.1)]


# --- captions -----------------------------------------------------------------------------------


def test_words_become_readable_cues_that_the_libraries_parse() -> None:
    words = [WordTiming(text=t, start_s=i * 0.3, end_s=i * 0.3 + 0.25)
             for i, t in enumerate("Once upon a time. There <was> a fox".split())]
    words[-1] = WordTiming(text="fox", start_s=5.0, end_s=5.5)  # after a long silence
    cues = word_cues(words)
    assert [c.text for c in cues] == ["Once upon a time.", "There <was> a", "fox"]
    parsed = list(webvtt.from_buffer(io.StringIO(cues_vtt(cues))))
    assert [c.text for c in parsed] == ["Once upon a time.", "There &lt;was&gt; a", "fox"]
    subs = list(srt.parse(cues_srt(cues)))
    assert [s.content for s in subs] == [c.text for c in cues]
    assert subs[2].start.total_seconds() == 5.0
    many = [WordTiming(text="word", start_s=i * 0.1, end_s=i * 0.1 + 0.1) for i in range(30)]
    assert all(len(c.text) <= 42 for c in word_cues(many))


# --- providers ----------------------------------------------------------------------------------


def test_espeak_word_times_from_events() -> None:
    (run,) = plan("Hello world 1995 - ok", render=lambda r: None, escape=lambda t: t)
    events = [_Event(True, 0, 0.0), _Event(True, 6, 0.5), _Event(False, 11, 0.9),
              _Event(True, 12, 0.9), _Event(True, 13, 1.2), _Event(True, 19, 2.0),
              _Event(False, 21, 2.4)]
    words = _word_times(run.groups, 0, len(run.sent), events, 10.0, 2.5)
    assert [(w.text, w.start_s, w.end_s) for w in words] == [
        ("Hello", 10.0, 10.5), ("world", 10.5, 10.9), ("1995", 10.9, 12.0),
        ("-", 12.0, 12.0), ("ok", 12.0, 12.4),
    ]


async def test_espeak_reads_a_phoneme_hint_and_times_a_break() -> None:
    provider = EspeakProvider()

    async def say(text: str):  # type: ignore[no-untyped-def]
        return await provider.synthesize(
            SynthesisRequest(text=text, voice_id="en-us", output_format="pcm_22050")
        )

    with trio.fail_after(20):
        plain = await say("I like tomato soup")
        hinted = await say('I like <phoneme ph="ˈsʌpəkælɪfrædʒəlɪstɪk">tomato</phoneme> soup')
        paused = await say('I like tomato <break time="800ms"/> soup')
    assert hinted.duration_s > plain.duration_s + 0.3  # the long word was said
    assert [w.text for w in hinted.alignment.words] == ["I", "like", "tomato", "soup"]
    tomato = hinted.alignment.words[2]
    assert tomato.end_s - tomato.start_s > 0.6
    # the break's silence, plus the engine's own lengthening of a phrase's last word
    assert 0.8 <= paused.duration_s - plain.duration_s < 1.0
    soup, tomato = paused.alignment.words[3], paused.alignment.words[2]
    assert soup.start_s - tomato.end_s == pytest.approx(0.8, abs=0.02)
    assert paused.characters == len("I like tomato soup")


async def test_the_fake_spreads_the_words_over_its_clip() -> None:
    result = await FakeProvider().synthesize(
        SynthesisRequest(text='one <break time="1s"/> two', voice_id="fake-en")
    )
    assert result.characters == len("one two")
    assert [(w.text, w.start_s, w.end_s) for w in result.alignment.words] == [
        ("one", 0.0, CLIP_S / 2), ("two", CLIP_S / 2, CLIP_S),
    ]


def test_elevenlabs_parts_are_shifted_by_the_clips_before_them() -> None:
    fmt = parse_format("mp3_44100_128")
    first = encode_pcm(silence(1.0, 44100), 44100, fmt)
    second = encode_pcm(silence(0.5, 44100), 44100, fmt)

    def timed(text: str, step: float) -> dict:  # type: ignore[type-arg]
        return {"characters": list(text),
                "character_start_times_seconds": [i * step for i in range(len(text))],
                "character_end_times_seconds": [(i + 1) * step for i in range(len(text))]}

    out = elevenlabs_alignment("Hi there. Bye.", [first, second],
                               [timed("Hi there.", 0.1), timed("Bye.", 0.1)], fmt, 1.5)
    assert out is not None
    assert [w.text for w in out.words] == ["Hi", "there.", "Bye."]
    bye = out.words[2]
    assert 1.0 <= bye.start_s <= 1.06  # the first clip's decoded length (encoder padding)
    assert elevenlabs_alignment("Hi", [first], [None], fmt, 1.0) is None


@pytest.mark.skipif(not piper.installed(), reason="Piper is not installed")
async def test_piper_words_are_spread_per_chunk_and_breaks_are_silence() -> None:
    provider = piper.PiperProvider()
    with trio.fail_after(30):
        result = await provider.synthesize(SynthesisRequest(
            text='The fox ran. <break time="1s"/> It rested.', voice_id=piper.JOE.voice_id,
            output_format="pcm_22050",
        ))
    words = result.alignment.words
    assert [w.text for w in words] == ["The", "fox", "ran.", "It", "rested."]
    assert words[3].start_s - words[2].end_s == pytest.approx(1.0, abs=0.01)
    assert words[-1].end_s == pytest.approx(result.duration_s, abs=0.01)


def test_rules_render_as_phoneme_rules() -> None:
    rule = PhonemeRule(string_to_replace="x", phoneme="p", alphabet="ipa")
    (run,) = plan('<phoneme ph="p">x</phoneme>', render=lambda r: f"<{r == rule}>",
                  escape=lambda t: t)
    assert run.sent.strip() == "<True>"

"""The fake provider's word timings, worked out once per layout of a text (``fake._alignment``),
are exactly the shared maths' (``timing.alignment`` of ``timing.even_words``) for every text:
the first of a layout, the later ones, breaks, odd spacing, non-Latin scripts, no words."""

from __future__ import annotations

import random

import pytest

from protocols.domain.ssml import spoken_text
from protocols.domain.text import normalize_text
from protocols.domain.timing import alignment, even_words
from protocols.messages import Alignment
from protocols.providers import fake

TEXTS = [
    "Hello there", "bench ab12 user-1 line 7", "bench ab12 user-1 line 8",
    "bench ab12 user-1 line 9999", "  leading and trailing  ", "tabs\tand\nnew lines",
    'One <break time="500ms"/> two', "한국어 문장입니다. 그리고 또!", "a", "", "   ",
    "Punctuation, everywhere; really: yes?!", "x" * 300 + " y",
]


def reference(text: str) -> Alignment:
    said = spoken_text(normalize_text(text))
    return alignment(said, even_words(said, fake.CLIP_S), fake.CLIP_S)


@pytest.mark.parametrize("text", TEXTS)
def test_the_fakes_timings_are_the_shared_maths(text: str) -> None:
    first, again = fake._alignment(text), fake._alignment(text)  # worked out, then known
    assert first == reference(text) and again == reference(text)


def test_texts_of_one_layout_keep_their_own_characters_and_words() -> None:
    rng = random.Random(11)
    for _ in range(300):  # same lengths and spaces, other letters: the layout is known
        word = "".join(rng.choice("abcdefghij") for _ in range(5))
        text = f"{word} {rng.randrange(10, 99)} said {word[::-1]}"
        assert fake._alignment(text) == reference(text)


def test_the_layouts_kept_are_bounded() -> None:
    for n in range(fake.LAYOUTS_KEPT + 100):  # as many layouts, and some
        text = f"{'w' * (n % 50 + 1)} {'v' * (n // 50 + 1)}"
        assert fake._alignment(text) == reference(text)
    assert len(fake._LAYOUTS) == fake.LAYOUTS_KEPT

"""protocols/domain/text.py: normalisation, speakable text and lossless sentence chunking."""

from __future__ import annotations

import random

import pytest

from protocols.domain.text import normalize_text, speakable, split_text


def assert_lossless(text: str, chunks: list[str], max_chars: int) -> None:
    """``text`` (stripped) == chunk0 + ws + chunk1 + ws + ... with each ws whitespace only."""
    pos = 0
    body = text.strip()
    for chunk in chunks:
        assert chunk, "empty chunk"
        assert len(chunk) <= max_chars, (len(chunk), max_chars)
        assert chunk == chunk.strip(), repr(chunk)
        assert body.startswith(chunk, pos), (body[pos : pos + 40], chunk[:40])
        pos += len(chunk)
        while pos < len(body) and body[pos].isspace():
            pos += 1
    assert pos == len(body)


def test_normalize_text():
    assert normalize_text("  Hello \t  world  ") == "Hello world"
    assert normalize_text("one\r\n\n  two\n three") == "one\ntwo\nthree"
    assert normalize_text("cafe\u0301") == "café"  # NFC
    assert normalize_text("\u1100\u1161") == "가"  # conjoining jamo → syllable
    assert normalize_text(" \n\t ") == ""
    # one whitespace character that is not a space is one too; lone spaces stay as they are
    assert normalize_text("a\tb\u00a0c\u3000d e\rf\u2028g") == "a b c d e\nf g"


def test_speakable_needs_a_letter_digit_mark_or_symbol():
    for nothing in ("", " \n\t", "\u200b\u200b", "\u2060", "\ufeff", "\u00ad", "\u200c\u200d",
                    "\u0301", "\x00\x07", "\ue000", "\u2028\u3000"):
        assert not speakable(normalize_text(nothing)), repr(nothing)
    for something in ("a", "\u200bhi", "7", "?", "안", "\u0301e", "🙂", "€"):
        assert speakable(normalize_text(something)), repr(something)


def test_short_text_is_one_chunk():
    assert split_text("Hello there. General Kenobi!", 100) == ["Hello there. General Kenobi!"]
    assert split_text("", 10) == []
    assert split_text("   \n ", 10) == []


def test_sentences_are_packed():
    sentence = "This sentence is thirty chars."  # 30 characters
    assert len(sentence) == 30
    text = " ".join([sentence] * 10)
    chunks = split_text(text, 100)
    assert chunks == [" ".join([sentence] * 3)] * 3 + [sentence]
    assert_lossless(text, chunks, 100)


def test_breaks_at_every_sentence_mark():
    text = "One! Two? Three… Four. 하나。둘！셋？넷\nfive"
    chunks = split_text(text, 6)
    assert chunks == ["One!", "Two?", "Three…", "Four.", "하나。둘！", "셋？넷", "five"]
    assert_lossless(text, chunks, 6)


def test_korean_sentences():
    text = "옛날 옛적에 깊은 산속에 여우가 살았어요. 여우는 매일 마을로 내려왔어요! 왜 그랬을까요?"
    assert split_text(text, 30)[1] == "여우는 매일 마을로 내려왔어요! 왜 그랬을까요?"  # packed
    chunks = split_text(text, 25)
    assert chunks == [
        "옛날 옛적에 깊은 산속에 여우가 살았어요.",
        "여우는 매일 마을로 내려왔어요!",
        "왜 그랬을까요?",
    ]


def test_decimal_points_and_abbreviations_do_not_split():
    text = "Pi is 3.14159 and e is 2.71828 roughly, see example.com for more"
    chunks = split_text(text, 40)
    assert not any(c.endswith(("3.", "2.", "example.")) for c in chunks)
    assert_lossless(text, chunks, 40)


def test_closing_quotes_stay_with_their_sentence():
    chunks = split_text('He said "Stop." Then he left. Nobody moved.', 20)
    assert chunks[0] == 'He said "Stop."'


def test_long_sentence_falls_back_to_commas_then_spaces():
    text = "alpha beta gamma delta, epsilon zeta eta theta iota kappa lambda mu"
    chunks = split_text(text, 30)
    assert chunks[0] == "alpha beta gamma delta,"  # the comma, not the last space
    assert_lossless(text, chunks, 30)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod"
    chunks = split_text(words, 20)
    assert all(c.split() == c.split(" ") for c in chunks)  # whole words only
    assert " ".join(chunks) == words


def test_no_break_characters_is_hard_cut():
    text = "x" * 2500
    chunks = split_text(text, 1000)
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert "".join(chunks) == text


def test_hard_cut_keeps_combining_marks_with_their_base():
    text = "e\u0301" * 10  # not NFC-composable on purpose: combining acute after each e
    chunks = split_text(text, 3)
    assert all(not c[0] == "\u0301" for c in chunks)
    assert "".join(chunks) == text


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError):
        split_text("abc", 0)


_PIECES = [
    "word", "Hello", "3.14", "e.g.", "ok", "다람쥐", "옛날", "山", "x" * 37, "café", "e\u0301",
    " ", " ", " ", "  ", "\n", "\t", ".", ". ", "! ", "? ", "…", "。", "！", "？", ",", ", ", "; ",
    "、", '"', "”", ")", "—", "-",
]  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_round_trip(seed):
    rng = random.Random(seed)
    for _ in range(25):
        raw = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 200)))
        max_chars = rng.choice([1, 2, 3, 5, 8, 13, 40, 100, 1000])
        for text in (raw, normalize_text(raw)):
            chunks = split_text(text, max_chars)
            assert_lossless(text, chunks, max_chars)
        normalized = normalize_text(raw)
        chunks = split_text(normalized, max_chars)
        # single-separator form: rebuilding with the removed separators gives the text back
        rebuilt = ""
        for chunk in chunks:
            if rebuilt:
                sep = normalized[len(rebuilt) : normalized.index(chunk, len(rebuilt))]
                assert sep in ("", " ", "\n")
                rebuilt += sep
            rebuilt += chunk
        assert rebuilt == normalized

"""Checking a submitted book and laying out its lines (``protocols/domain/storybooks.py``)."""

from __future__ import annotations

import msgspec
import pytest

from protocols.domain.ssml import InvalidMarkup
from protocols.domain.storybooks import (
    StorybookTooLarge,
    UnknownSpeaker,
    line_job_key,
    plan,
    request_hash,
    voices_used,
)
from protocols.errors import TextEmpty, TextTooLong
from protocols.storybooks import StorybookRequest

LIMITS = dict(output_format="mp3_44100_128", default_voice="narrator-default",
              max_line_chars=50, max_lines=10, max_chars=200)


def request(**fields: object) -> StorybookRequest:
    body = {
        "title": " Moon ",
        "cast": {"Fox": {"voice_id": "fox", "voice_settings": {"stability": 0.3}},
                 "Owl": {"voice_id": "owl"}},
        "pages": [
            {"title": "One", "lines": [{"speaker": "Fox", "text": "Hello  moon"},
                                       {"text": "The wind blew."}]},
            {"lines": [{"speaker": "Owl", "text": "Hoo."},
                       {"speaker": "Fox", "text": "Bye", "voice_id": "special"}]},
        ],
        **fields,
    }
    return msgspec.convert(body, StorybookRequest)


def test_lines_get_their_speakers_voice_in_reading_order():
    book = plan(request(), "alice", **LIMITS)
    assert book.owner == "alice" and book.title == "Moon"
    assert [(ln.page, ln.index) for ln in book.lines] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [ln.voice_id for ln in book.lines] == ["fox", "narrator-default", "owl", "special"]
    assert book.lines[0].text == "Hello moon"  # normalized like a job's text
    assert book.lines[0].voice_settings is not None
    assert book.lines[3].voice_settings is None  # its own voice: not the speaker's settings
    assert book.page_titles == ("One", None)
    assert book.characters == sum(len(ln.text) for ln in book.lines)
    assert len({ln.id for ln in book.lines}) == 4
    assert voices_used(book) == {"fox": (0, 0), "narrator-default": (0, 1), "owl": (1, 0),
                                 "special": (1, 1)}


@pytest.mark.parametrize(("pages", "error", "where"), [
    ([{"lines": [{"text": "ok"}, {"speaker": "Cat", "text": "meow"}]}], UnknownSpeaker,
     "pages[0].lines[1]"),
    ([{"lines": [{"text": "ok"}]}, {"lines": [{"text": "\u200b "}]}], TextEmpty,
     "pages[1].lines[0]"),
    ([{"lines": [{"text": "x" * 51}]}], TextTooLong, "pages[0].lines[0]"),
    ([{"lines": [{"text": "a"}]} for _ in range(11)], StorybookTooLarge, "11 lines"),
    ([{"lines": [{"text": "x" * 50}]} for _ in range(5)], StorybookTooLarge, "250 characters"),
    ([{"lines": [{"text": "ok"}, {"text": 'Wait <break time="9s"/> done.'}]}], InvalidMarkup,
     "pages[0].lines[1]"),
])
def test_a_bad_book_is_refused_naming_where(pages, error, where):
    with pytest.raises(error) as caught:
        plan(request(pages=pages), "alice", **LIMITS)
    assert where in caught.value.detail


def test_the_request_hash_ignores_only_the_idempotency_key():
    a = request(idempotency_key="k1")
    assert request_hash(a) == request_hash(request(idempotency_key="k2"))
    assert request_hash(a) != request_hash(request(title="Sun"))


def test_a_lines_job_key_differs_per_round():
    assert line_job_key("sb_1", "ln_1", 0) != line_job_key("sb_1", "ln_1", 1)


def test_a_lines_markup_is_not_charged_as_a_jobs_is_not():
    pages = [{"lines": [{"text": 'Once <break time="1s"/> upon a time.'}, {"text": "Plain."}]}]
    book = plan(request(pages=pages), "alice", **LIMITS)
    assert [ln.characters for ln in book.lines] == [len("Once upon a time."), len("Plain.")]
    assert book.characters == len("Once upon a time.") + len("Plain.")

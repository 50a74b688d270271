"""Joining the character times of ElevenLabs' ``/stream/with-timestamps`` lines (``_Timings``):
times from the clip's start kept, times from a piece's own start shifted after the pieces
before, a malformed alignment leaves the clip without one instead of failing the job."""

from __future__ import annotations

from types import SimpleNamespace

from protocols.providers.elevenlabs.streaming import _Timings


def piece(chars: str, starts: list[float], ends: list[float]) -> SimpleNamespace:
    return SimpleNamespace(characters=list(chars), character_start_times_seconds=starts,
                           character_end_times_seconds=ends)


def test_times_from_the_clip_start_are_kept() -> None:
    timings = _Timings()
    timings.add(piece("Hi ", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3]))
    timings.add(None)  # a line with audio only
    timings.add(piece("you", [0.3, 0.4, 0.5], [0.4, 0.5, 0.6]))
    aligned = timings.alignment("Hi you", "Hi you", 0.6)
    assert aligned is not None
    assert [(w.text, w.start_s, w.end_s) for w in aligned.words] == [
        ("Hi", 0.0, 0.2), ("you", 0.3, 0.6)]


def test_times_from_a_piece_start_follow_the_pieces_before() -> None:
    timings = _Timings()
    timings.add(piece("Hi ", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3]))
    timings.add(piece("you", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3]))
    aligned = timings.alignment("Hi you", "Hi you", 0.6)
    assert aligned is not None
    assert [(w.text, w.start_s, w.end_s) for w in aligned.words] == [
        ("Hi", 0.0, 0.2), ("you", 0.3, 0.6)]


def test_a_malformed_alignment_means_none() -> None:
    timings = _Timings()
    timings.add(piece("Hi ", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3]))
    timings.add(piece("you", [0.3, 0.4], [0.4, 0.5, 0.6]))  # lists of different lengths
    assert timings.alignment("Hi you", "Hi you", 0.6) is None
    assert _Timings().alignment("Hi", "Hi", 0.6) is None  # no alignment at all

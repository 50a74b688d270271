"""Decoding what the compat routes answer (PyAV), for the SDK contract tests."""

from __future__ import annotations

import io

import av


def decoded_seconds(data: bytes, *, raw_rate: int | None = None) -> float:
    """The clip's length, decoding every frame (``raw_rate``: headerless s16le mono PCM)."""
    if raw_rate is not None:
        assert len(data) % 2 == 0, "odd byte count for 16-bit PCM"
        return len(data) / 2 / raw_rate
    samples = 0
    rate = 0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate > 0, "no audio frame decoded"
    return samples / rate


def check_alignment(alignment: dict | object, text: str, clip_s: float) -> None:
    """Monotonic character times covering ``text``, ending within 100 ms of the clip's end."""
    get = alignment.get if isinstance(alignment, dict) else lambda k: getattr(alignment, k)
    chars = list(get("characters"))
    starts = list(get("character_start_times_seconds"))
    ends = list(get("character_end_times_seconds"))
    assert "".join(chars) == text
    assert len(starts) == len(ends) == len(chars)
    assert all(a <= b for a, b in zip(starts, starts[1:], strict=False)), starts
    assert all(s <= e for s, e in zip(starts, ends, strict=True))
    assert abs(ends[-1] - clip_s) <= 0.1, (ends[-1], clip_s)

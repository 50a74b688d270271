"""The pure helpers of ``run.py bench`` (the workloads themselves are a command, not a test)."""

from __future__ import annotations

import math

import pytest

from actors.bench import _partial, _piper_figures, percentile, refill_gaps


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_refill_gaps_match_each_freed_slot_with_the_start_it_allowed() -> None:
    # two slots; jobs of 1 s; each new job starts 0.1 s after a slot frees
    starts = [0.0, 0.0, 1.1, 1.1, 2.2]
    finishes = [1.0, 1.0, 2.1, 2.1, 3.2]
    assert refill_gaps(starts, finishes, 2) == pytest.approx([0.1, 0.1, 0.1])


def test_refill_gaps_need_more_jobs_than_slots() -> None:
    assert refill_gaps([0.0, 0.0], [1.0, 1.0], 3) == []


def test_piper_speed_is_information_and_says_when_piper_is_missing() -> None:
    (missing,) = _piper_figures({"installed": False})
    assert "not installed" in missing[0] and missing[4] is None  # info, not a failure
    figures = _piper_figures({"installed": True, "x_realtime_1": 9.5, "x_realtime_2": 17.0})
    assert [(f[1], f[2], f[4]) for f in figures] == [(9.5, "x real", None), (17.0, "x real", None)]
    assert "2 onnxruntime threads" in figures[1][0]
    assert _partial({"piper": {"installed": False}}) == [missing]  # ``--only piper``

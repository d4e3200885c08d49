"""PhaseTimer: seconds per named phase, summed over repeats, counted even when a phase fails."""

from __future__ import annotations

import time

import pytest

from kernel.timing import PhaseTimer, seconds_since_process_start


def test_phases_are_timed_and_repeats_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 12.5, 20.0, 21.0, 30.0, 30.25])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    timer = PhaseTimer()
    with timer.phase("load"):
        pass
    with timer.phase("fit"):
        pass
    with timer.phase("load"):
        pass
    assert timer.seconds["load"] == pytest.approx(2.5 + 0.25)
    assert timer.seconds["fit"] == pytest.approx(1.0)
    assert list(timer.seconds) == ["startup", "load", "fit"]
    assert timer.summary().endswith("load 2.8, fit 1.0")


def test_a_failing_phase_is_still_counted() -> None:
    timer = PhaseTimer()
    with pytest.raises(ValueError), timer.phase("broken"):
        raise ValueError("boom")
    assert timer.seconds["broken"] >= 0.0


def test_startup_is_the_age_of_this_process() -> None:
    age = seconds_since_process_start()
    assert 0.0 < age < 24 * 3600  # pytest has been running for some time, not for days
    assert PhaseTimer().seconds["startup"] >= age

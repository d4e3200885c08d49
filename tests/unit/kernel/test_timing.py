"""PhaseTimer: seconds per named phase, summed over repeats, counted even when a phase fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel.paths import PROJECT_ROOT
from kernel.timing import (
    WORK_STARTED_LOG,
    PhaseTimer,
    note_work_started,
    seconds_since_process_start,
)


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


def test_a_stage_notes_its_fixed_cost_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "started.jsonl"
    monkeypatch.delenv(WORK_STARTED_LOG, raising=False)
    note_work_started("train")
    assert not log.exists()
    monkeypatch.setenv(WORK_STARTED_LOG, str(log))
    note_work_started("train")
    note_work_started("export")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["stage"] for line in lines] == ["train", "export"]
    age = seconds_since_process_start()
    assert all(0.0 < line["fixed_seconds"] <= age for line in lines)


def test_the_fixed_cost_of_a_fresh_process_counts_its_imports(tmp_path: Path) -> None:
    """From the interpreter's start: a second of sleeping before the note is in it."""
    log = tmp_path / "started.jsonl"
    code = "import time; time.sleep(1.0)\nfrom kernel.timing import note_work_started\n"
    code += "note_work_started('fetch')\n"
    subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, WORK_STARTED_LOG: str(log), "PYTHONPATH": str(PROJECT_ROOT)},
        check=True,
        timeout=60,
    )
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["stage"] == "fetch"
    assert 1.0 <= line["fixed_seconds"] < 30.0

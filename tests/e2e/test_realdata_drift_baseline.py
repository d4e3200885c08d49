"""docs/monitoring.md's "What clean digits score", on real MNIST (from PyPI, through the real
fetch and preprocess stages): the numbers the page gives are what ``monitor.baseline`` prints
for the commands it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factories.processes import run_module, stage_args
from kernel.paths import PROJECT_ROOT

ROW = re.compile(r"^(?P<name>\w+) +(?P<median>[\d.]+) +(?P<max>[\d.]+)  (?P<reached>\d+) of ")
PAGE = PROJECT_ROOT / "docs" / "monitoring.md"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> list[str | Path]:
    """monitor.baseline's arguments for real MNIST prepared as the pipeline prepares it."""
    root = tmp_path_factory.mktemp("realdata-baseline")
    params = root / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw, prepared = root / "raw" / "mnist.npz", root / "prepared"
    fetched = run_module("stages.fetch", *stage_args("fetch", {"raw": raw}), cwd=root, timeout=900)
    assert fetched.returncode == 0, fetched.stderr
    args = stage_args("preprocess", {"raw": raw, "prepared": prepared,
                                     "data_report": root / "data.json"})  # fmt: skip
    made = run_module("stages.preprocess", *args, cwd=root)
    assert made.returncode == 0, made.stderr
    return ["--params", params, "--train", prepared / "train.npz", "--test", prepared / "test.npz"]


def _run(mnist: list[str | Path], *args: str) -> tuple[list[str], dict[str, re.Match[str]]]:
    result = run_module("monitor.baseline", *mnist, *args, cwd=PROJECT_ROOT, timeout=900)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return lines, {m["name"]: m for m in map(ROW.match, lines) if m}


def _descriptor_max(rows: dict[str, re.Match[str]]) -> float:
    return max(float(row["max"]) for name, row in rows.items() if name != "digits")


@pytest.mark.realdata
def test_the_pages_commands_are_the_ones_measured() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for command in (
        ".venv/bin/python -m monitor.baseline  ",
        ".venv/bin/python -m monitor.baseline --size 300 --windows 30  ",
        ".venv/bin/python -m monitor.baseline --size 300 --windows 33 --in-file-order  ",
    ):
        assert f"    {command}" in text, command


@pytest.mark.realdata
def test_windows_of_1000_drawn_at_random(mnist) -> None:
    lines, rows = _run(mnist)
    assert _descriptor_max(rows) <= 0.12
    assert lines[-2].startswith("in one window: at most 1 descriptors above 0.1, at most 0 at")
    assert lines[-1] == "flagged as drift: 0 of 10 windows"


@pytest.mark.realdata
def test_windows_of_300_drawn_at_random(mnist) -> None:
    lines, rows = _run(mnist, "--size", "300", "--windows", "30")
    assert rows["strokes"]["max"] == "0.253" and rows["strokes"]["reached"] == "1"
    assert _descriptor_max(rows) == pytest.approx(0.253)
    assert lines[-2].startswith("in one window: at most 5 descriptors above 0.1, at most 1 at")
    assert lines[-1] == "flagged as drift: 0 of 30 windows"


@pytest.mark.realdata
def test_windows_in_mnists_order(mnist) -> None:
    lines, rows = _run(mnist, "--in-file-order", "--size", "300", "--windows", "1")
    assert rows["width"]["max"] == "0.262"  # what a new user saw, the first 300 digits
    assert lines[-2].startswith("in one window: at most 6 descriptors above 0.1")
    lines, rows = _run(mnist, "--in-file-order", "--size", "300", "--windows", "33")
    assert rows["stroke_width"]["max"].startswith("2.1")
    assert lines[-1] == "flagged as drift: 11 of 33 windows"
    lines, _ = _run(mnist, "--in-file-order")
    assert lines[-1] == "flagged as drift: 4 of 10 windows"

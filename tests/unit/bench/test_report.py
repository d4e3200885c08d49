"""``BENCHMARKS.md`` is what ``bench.report`` renders of ``reports/bench.json``, to the byte.

``bench`` is no installed package (it runs from the project root): it is imported with the
project root on the path.
"""

from __future__ import annotations

import copy
import importlib
import json
from types import ModuleType

import pytest

from kernel.paths import PROJECT_ROOT

RESULTS = json.loads((PROJECT_ROOT / "reports/bench.json").read_text(encoding="utf-8"))
OPTIONAL_SECTIONS = ("serving", "load", "int8", "page", "sweep", "team", "accuracy")


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("bench.report")


def test_benchmarks_md_is_the_rendering_of_the_committed_figures(report: ModuleType) -> None:
    committed = (PROJECT_ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert report.render_markdown(RESULTS) == committed


@pytest.mark.parametrize("section", OPTIONAL_SECTIONS)
def test_a_section_not_measured_is_left_out_of_targets_and_body(
    report: ModuleType, section: str
) -> None:
    results = copy.deepcopy(RESULTS)
    del results[section]
    full, without = report.render_markdown(RESULTS), report.render_markdown(results)
    assert len(without.splitlines()) < len(full.splitlines())
    assert without.startswith("# Benchmarks\n") and "## Inference" in without


@pytest.mark.parametrize("section", ["serving", "load", "int8", "sweep"])
def test_a_section_measured_again_says_when(report: ModuleType, section: str) -> None:
    results = {**RESULTS, f"{section}_updated": "2030-01-02 03:04 UTC"}
    page = report.render_markdown(results)
    line = f"Measured 2030-01-02 03:04 UTC with `python -m bench --update {section}`."
    assert page.count(line) == 1

"""monitor.drift_check: the report and the summary replace the previous ones together, or
neither does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.drift_check import REPORT, SUMMARY, write_outputs


class _Snapshot:
    """Stands in for Evidently's snapshot: writes its page where it is told."""

    def __init__(self, html: str) -> None:
        self.html = html

    def save_html(self, path: str) -> None:
        Path(path).write_text(self.html, encoding="utf-8")


def test_both_files_are_written_readable_by_all(tmp_path) -> None:
    write_outputs(tmp_path / "out", _Snapshot("<p>new</p>"), {"drift": False})
    out = tmp_path / "out"
    assert (out / REPORT).read_text() == "<p>new</p>"
    assert json.loads((out / SUMMARY).read_text()) == {"drift": False}
    assert {(out / name).stat().st_mode & 0o777 for name in (REPORT, SUMMARY)} == {0o644}
    assert sorted(p.name for p in out.iterdir()) == [REPORT, SUMMARY], "nothing left over"


def test_a_summary_that_cannot_be_written_leaves_the_old_report_too(tmp_path) -> None:
    out = tmp_path / "out"
    write_outputs(out, _Snapshot("<p>old</p>"), {"drift": False})
    with pytest.raises(TypeError):
        write_outputs(out, _Snapshot("<p>new</p>"), {"drift": object()})
    assert (out / REPORT).read_text() == "<p>old</p>"
    assert json.loads((out / SUMMARY).read_text()) == {"drift": False}
    assert sorted(p.name for p in out.iterdir()) == [REPORT, SUMMARY], "nothing left over"

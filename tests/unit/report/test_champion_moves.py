"""The review page's last moves of @champion, as the registry's history records them."""

from __future__ import annotations

from report.page import champion_moves
from report.runs import Run
from tracking.champion_history import Move, Pin


def _run(moves: tuple[Move, ...], pin: Pin | None = None) -> Run:
    return Run("run", "0" * 32, None, "mnist-digits", "champion", "3", (), moves, pin)


def test_the_last_moves_name_who_moved_and_why_and_the_pin() -> None:
    moves = (
        Move(
            "champion",
            None,
            "1",
            "ann",
            "rule",
            "there is no champion yet",
            "2026-12-07T05:00:00.1Z",
        ),
        Move("champion", "1", "3", "bob", "promote", "better on sevens", "2026-12-07T06:30:00.2Z"),
    )
    lines = champion_moves(_run(moves, Pin("champion", "3", "bob", "better on sevens", "x")))
    assert lines == [
        "- `@champion`'s last moves (`make history` lists them all):",
        "  - 2026-12-07 05:00 UTC, rule: none → v1, by the rule (export by ann): there is no "
        "champion yet",
        "  - 2026-12-07 06:30 UTC, promote: v1 → v3, by bob: better on sevens",
        "  - now pinned to v3 by bob (better on sevens): exports leave it there.",
    ]


def test_no_move_recorded_says_so_and_no_run_says_nothing() -> None:
    assert champion_moves(_run(())) == [
        "- `@champion`'s last moves: none recorded (`make history` lists them)."
    ]
    assert champion_moves("no run in the store") == []

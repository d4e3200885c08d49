"""The review as GitHub-flavoured Markdown: tables that read in a terminal too, images by
relative link. Pure: takes the gathered review, returns the text."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from report.compare import Gate, MetricRow, ParamRow, RuleOutcome, is_fraction
from report.figures import CONFUSION, CURVES
from report.runs import Lookup, Run
from report.sides import Side
from tracking.champion import RULE

MARKS = {
    "better": "✔ better",
    "worse": "✘ worse",
    "same": "= same",
    "changed": "changed",
    "new": "new",
    "gone": "gone",
}
NO_CHANGE = "No change"
SIDE_NAMES = ("Base", "This change")


@dataclass(frozen=True)
class Review:
    base: Side
    this: Side
    unchanged: bool
    params: list[ParamRow]
    metrics: list[MetricRow]
    gates: list[Gate]
    rule: RuleOutcome
    f1: list[MetricRow]
    f1_threshold: float
    runs: Lookup | None  # None: MLflow not asked (--no-mlflow)
    images: tuple[str, ...]  # the image files written beside the page
    environment: list[tuple[str, str]]
    epochs: tuple[int | None, int | None]  # epochs each side trained
    # what the images are drawn from (base, this): history.csv's columns, confusion counts
    histories: tuple[dict[str, list[float]] | None, dict[str, list[float]] | None] = (None, None)
    confusions: tuple[np.ndarray | None, np.ndarray | None] = (None, None)


def cell(value: object) -> str:
    """A table cell: a param's value as YAML would show it, pipes escaped."""
    if value is None:
        text = "—"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def number(name: str, value: float | None) -> str:
    """A figure as the page shows it: fractions as percentages, drops in points."""
    if value is None:
        return "—"
    if is_fraction(name):
        return f"{value:.2%}".replace("%", " %")
    if "drop" in name:
        return f"{value * 100:.2f} pts"
    return f"{value:.4g}"


def delta(name: str, value: float | None) -> str:
    """A difference with its sign: in points for fractions, else as the figure is."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if is_fraction(name) or "drop" in name:
        points = value * 100
        shown = f"{points:+.2f}" if abs(points) >= 0.005 else f"{points:+.2g}"
        return f"{shown} pts"
    return f"{value:+.4g}"


def table(header: list[str], rows: list[list[str]], kinds: str = "") -> list[str]:
    """A GFM table; ``kinds``: one letter per column, ``r`` right-aligned, else left."""
    separators = ["---:" if kind == "r" else "---" for kind in kinds.ljust(len(header), "l")]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(separators) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def metric_table(rows: list[MetricRow], names: tuple[str, str], first: str = "Metric") -> list[str]:
    body = [
        [
            f"`{row.name}`",
            number(row.name, row.old),
            number(row.name, row.new),
            delta(row.name, row.delta),
            MARKS[row.verdict],
        ]
        for row in rows
    ]
    return table([first, names[0], names[1], "Δ", ""], body, "lrrrl")


def _verdict(passed: bool | None) -> str:
    return {True: "✔ pass", False: "✘ fail", None: "— (no report)"}[passed]


def gate_table(gate: Gate, names: tuple[str, str]) -> list[str]:
    rows = [["**verdict**", _verdict(gate.old.passed), _verdict(gate.new.passed)]]
    for figure in gate.figures:
        label = figure.label
        limit = None
        for side in (gate.new, gate.old):
            if figure.limit_key and side.figure(figure.limit_key) is not None:
                limit = side.figure(figure.limit_key)
                break
        if limit is not None:
            label += f" ({figure.bound.replace('<=', '≤').replace('>=', '≥')} "
            label += f"{number(figure.key, limit)})"
        rows.append(
            [
                label,
                number(figure.key, gate.old.figure(figure.key)),
                number(figure.key, gate.new.figure(figure.key)),
            ]
        )
    lines = table(["", names[0], names[1]], rows, "lrr")
    for side, name in ((gate.old, names[0]), (gate.new, names[1])):
        for failure in side.failures:
            lines.append("")
            lines.append(f"- {name} failed: {cell(failure)}")
    return lines


def _run_cell(lookup: Lookup | None, side: Side) -> str:
    if lookup is None:
        return "— (not asked: --no-mlflow)"
    if lookup.unavailable:
        missing = lookup.unavailable.startswith("no MLflow store")
        return "— (no MLflow store)" if missing else "— (store not reachable)"
    found = lookup.runs.get(side.label)
    if isinstance(found, Run):
        name = f"`{cell(found.name)}`"
        return f"[{name}]({found.link})" if found.link else name
    return f"— ({cell(found)})" if found else "—"


def sides_table(review: Review) -> list[str]:
    base, this = review.base, review.this
    rows = [
        ["Revision", base.describe(), this.describe()],
        ["MLflow run", _run_cell(review.runs, base), _run_cell(review.runs, this)],
    ]
    if any(review.epochs):
        rows.append(["Epochs trained", *(cell(e) for e in review.epochs)])
    return table(["", "Base", "This change"], rows)


def summary(review: Review) -> str:
    parts = []
    headline = next((row for row in review.metrics if row.name == "accuracy"), None)
    if headline is not None:
        parts.append(
            f"test accuracy {number('accuracy', headline.old)} → "
            f"{number('accuracy', headline.new)} ({delta('accuracy', headline.delta)}, "
            f"{headline.verdict})"
        )
    for gate in review.gates:
        verdict = {True: "passes", False: "FAILS", None: "has no report"}[gate.new.passed]
        parts.append(f"the {gate.name.lower()} gate {verdict}")
    if review.rule.applies:
        parts.append(
            "the champion rule would promote it"
            if review.rule.promote
            else "the champion rule would keep the base"
        )
    else:
        parts.append("not ranked by the champion rule")
    return "; ".join(parts) + "."


def champion_section(review: Review) -> list[str]:
    lines = ["## The champion rule", "", f"The rule (export): {RULE}.", ""]
    rule = review.rule
    if rule.applies:
        outcome = "**promoted**" if rule.promote else "**not promoted** (the base stays)"
        lines.append(
            f"- Applied to these two, the base as champion and this change as candidate: "
            f"{outcome}: {rule.reason}. (From the committed parity reports and dvc.lock's "
            "digest of the test data.)"
        )
    else:
        lines.append(f"- Not applied: {rule.reason}.")
    lookup = review.runs
    if lookup is None:
        lines.append("- What export recorded in the registry: not asked (--no-mlflow).")
        return lines
    if lookup.unavailable:
        lines.append(
            f"- What export recorded in the registry: unknown ({cell(lookup.unavailable)})."
        )
        return lines
    base_run, this_run = lookup.runs.get(review.base.label), lookup.runs.get(review.this.label)
    same = isinstance(base_run, Run) and isinstance(this_run, Run)
    same = same and base_run.run_id == this_run.run_id
    sides = (
        [("Both sides (one run)", this_run)]
        if same
        else [("Base", base_run), ("This change", this_run)]
    )
    for name, found in sides:
        lines.append(f"- {name}: {registry_record(found)}")
    lines += champion_moves(this_run if isinstance(this_run, Run) else base_run)
    return lines


def champion_moves(found: Run | str | None) -> list[str]:
    """The last moves of @champion, from the registry (``make history`` lists them all)."""
    if not isinstance(found, Run):
        return []
    alias = found.champion_alias
    if not found.champion_moves:
        return [f"- `@{alias}`'s last moves: none recorded (`make history` lists them)."]
    lines = [f"- `@{alias}`'s last moves (`make history` lists them all):"]
    for move in found.champion_moves:
        source = f"v{move.source}" if move.source else "none"
        to = f"v{move.to}" if move.to else "removed"
        lines.append(
            f"  - {move.at[:16].replace('T', ' ')} UTC, {move.how}: {source} → {to}, by "
            f"{cell(move.who())}: {cell(move.reason)}"
        )
    if found.champion_pin is not None:
        lines.append(f"  - now {cell(found.champion_pin.said())}: exports leave it there.")
    return lines


def registry_record(found: Run | str | None) -> str:
    """What export recorded for a run's newest registered version, in one sentence."""
    if not isinstance(found, Run):
        return f"no run in the store ({cell(found)})."
    if not found.versions:
        return (
            f"run `{cell(found.name)}` has no registered version of `{found.registered_name}` "
            "(not handed off)."
        )
    version = found.versions[-1]
    promotion = version.tags.promotion
    decision = promotion.decision if promotion else "no decision recorded"
    reason = promotion.reason if promotion else ""
    aliases = ", ".join(f"`@{a}`" for a in version.aliases) or "no alias"
    text = f"`{found.registered_name}` v{version.version} ({aliases}): export decided "
    text += f"**{cell(decision)}**" + (f": {cell(reason)}" if reason else "")
    if found.champion_now == version.version:
        text += f"; it is `@{found.champion_alias}` now"
    elif found.champion_now:
        text += f"; `@{found.champion_alias}` is v{found.champion_now} now"
    earlier = len(found.versions) - 1
    if earlier:
        text += f" ({earlier} earlier export(s) of the same run registered too)"
    return text + "."


def render(review: Review) -> str:
    title = f"# Model review: {review.this.describe()} against {review.base.describe()}"
    lines = [title, "", *sides_table(review), ""]
    if review.unchanged:
        lines += [
            f"**{NO_CHANGE}**: both sides have the same params and the same results "
            "(metrics, gates, per-digit figures, training history, confusion matrix).",
            "",
        ]
    else:
        lines += [f"**Summary:** {summary(review)}", ""]
        for section in CHANGE_SECTIONS:
            lines += section(review)
    lines += environment_section(review)
    return "\n".join(lines) + "\n"


def params_section(review: Review) -> list[str]:
    lines = ["## Params that changed", ""]
    if review.params:
        lines += table(
            ["Param", *SIDE_NAMES],
            [[f"`{p.name}`", cell(p.old), cell(p.new)] for p in review.params],
        )
    else:
        lines.append("None: the same params.yaml on both sides.")
    return [*lines, ""]


def metrics_section(review: Review) -> list[str]:
    return [
        "## Test metrics",
        "",
        *metric_table(review.metrics, SIDE_NAMES),
        "",
        "Higher is better for accuracy, F1, precision and recall; lower for loss.",
        "",
    ]


def gates_section(review: Review) -> list[str]:
    lines = ["## Gates", ""]
    for gate in review.gates:
        lines += [f"### {gate.name}", "", *gate_table(gate, SIDE_NAMES), ""]
    return lines


def f1_section(review: Review) -> list[str]:
    threshold = f"{review.f1_threshold * 100:g} pts"
    lines = [f"## Per-digit F1 (changes of {threshold} or more)", ""]
    if review.f1:
        lines += metric_table(review.f1, SIDE_NAMES, first="F1")
    else:
        lines.append(f"No digit's F1 moved by {threshold} or more.")
    return [*lines, ""]


def images_section(review: Review) -> list[str]:
    lines = []
    if CURVES in review.images:
        lines += [
            "## Training curves",
            "",
            "The base dashed, this change solid.",
            "",
            f"![Training curves: loss and accuracy per epoch, both sides]({CURVES})",
            "",
        ]
    if CONFUSION in review.images:
        lines += [
            "## Confusion matrices",
            "",
            "Actual digit down, predicted across; the third panel is this change minus the base "
            "(blue: more right answers or fewer mistakes, red: the opposite).",
            "",
            f"![Confusion matrices of both sides and their difference]({CONFUSION})",
            "",
        ]
    return lines


def champion_rule_section(review: Review) -> list[str]:
    return [*champion_section(review), ""]


# what a page of a change shows between its summary and the environment, in order
CHANGE_SECTIONS = (
    params_section,
    metrics_section,
    gates_section,
    champion_rule_section,
    f1_section,
    images_section,
)


def environment_section(review: Review) -> list[str]:
    return [
        "## Environment",
        "",
        "The stack this review was made with (`python -m report`):",
        "",
        *table(["Package", "Version"], [[name, f"`{v}`"] for name, v in review.environment]),
    ]

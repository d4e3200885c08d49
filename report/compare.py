"""What changed between two sides, as rows a page can show. Pure: no files, no printing.

The params and metrics diffs come from DVC (``params diff``, ``metrics diff``) in its own
shape, ``{file: {key: {"old": …, "new": …}}}``; the gates, per-digit F1 and the champion
rule are judged here from the reports' contents.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tracking.champion import Standing, decide

# how a metric's name says which way is better (checked in this order: "accuracy_drop" is
# a drop before it is an accuracy)
LOWER_IS_BETTER = ("loss", "latency", "seconds", "_ms", "diff", "drop", "bytes", "error")
HIGHER_IS_BETTER = ("accuracy", "f1", "precision", "recall", "agreement")
# shown as percentages, their deltas in points
FRACTIONS = ("accuracy", "f1", "precision", "recall", "agreement")
HEADLINE_ORDER = ("accuracy", "loss", "macro_f1", "macro_precision", "macro_recall")
SAME = 1e-12  # a delta this small is float noise from DVC's subtraction
NUM_CLASSES = 10


def better_direction(name: str) -> int:
    """+1 when a higher value is better, -1 when a lower one is, 0 when the name does not say."""
    key = name.lower()
    if any(word in key for word in LOWER_IS_BETTER):
        return -1
    if any(word in key for word in HIGHER_IS_BETTER):
        return 1
    return 0


def is_fraction(name: str) -> bool:
    key = name.lower()
    return any(word in key for word in FRACTIONS) and "drop" not in key


@dataclass(frozen=True)
class MetricRow:
    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        return self.new - self.old

    @property
    def verdict(self) -> str:
        """``better``, ``worse``, ``same``, ``changed`` (no known direction) or ``new``/``gone``."""
        if self.old is None:
            return "new"
        if self.new is None:
            return "gone"
        delta = self.new - self.old
        if abs(delta) <= SAME:
            return "same"
        direction = better_direction(self.name)
        if direction == 0:
            return "changed"
        return "better" if delta * direction > 0 else "worse"


@dataclass(frozen=True)
class ParamRow:
    name: str
    old: object
    new: object


def param_rows(params_diff: Mapping) -> list[ParamRow]:
    """DVC's ``params diff`` (its ``diff`` part) as rows, one per changed key, sorted."""
    rows = []
    for file_name, keys in sorted(params_diff.items()):
        prefix = "" if file_name == "params.yaml" else f"{file_name}:"
        for key, change in sorted(keys.items()):
            rows.append(ParamRow(prefix + key, change.get("old"), change.get("new")))
    return rows


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def metric_rows(metrics_diff: Mapping, metrics_file: str, int8_file: str) -> list[MetricRow]:
    """The headline test figures from DVC's ``metrics diff --all``: every number of the
    metrics file (accuracy first), then the int8 model's accuracy."""
    figures = metrics_diff.get(metrics_file, {})
    order = {name: i for i, name in enumerate(HEADLINE_ORDER)}
    names = sorted(figures, key=lambda n: (order.get(n, len(order)), n))
    rows = []
    for name in names:
        old, new = _number(figures[name].get("old")), _number(figures[name].get("new"))
        if old is not None or new is not None:
            rows.append(MetricRow(name, old, new))
    int8 = metrics_diff.get(int8_file, {}).get("int8_accuracy")
    if int8:
        rows.append(MetricRow("int8_accuracy", _number(int8.get("old")), _number(int8.get("new"))))
    return rows


# --- the gates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateFigure:
    label: str
    key: str  # the figure in the gate's report
    limit_key: str | None  # the setting it is held to, in the same report
    bound: str  # "<=" or ">=" or "" (no limit: shown for information)


PARITY_FIGURES = (
    GateFigure("max abs difference of probabilities", "max_abs_diff", "tolerance", "<="),
    GateFigure("argmax agreement", "argmax_agreement", "min_agreement", ">="),
    GateFigure("ONNX test accuracy", "onnx_accuracy", None, ""),
    GateFigure("Keras test accuracy", "keras_accuracy", None, ""),
)
INT8_FIGURES = (
    GateFigure("accuracy drop", "accuracy_drop", "max_accuracy_drop", "<="),
    GateFigure("argmax agreement", "argmax_agreement", "min_agreement", ">="),
    GateFigure("max abs difference of probabilities", "max_abs_diff", "max_probability_diff", "<="),
    GateFigure("int8 test accuracy", "int8_accuracy", None, ""),
    GateFigure("size ratio (fp32 / int8)", "size_ratio", None, ""),
)


@dataclass(frozen=True)
class GateSide:
    """One gate's report on one side: None when the side has no report of it."""

    report: dict | None

    @property
    def passed(self) -> bool | None:
        return None if self.report is None else bool(self.report.get("passed"))

    @property
    def failures(self) -> list[str]:
        return [] if self.report is None else [str(f) for f in self.report.get("failures", [])]

    def figure(self, key: str) -> float | None:
        return None if self.report is None else _number(self.report.get(key))


@dataclass(frozen=True)
class Gate:
    name: str
    figures: tuple[GateFigure, ...]
    old: GateSide
    new: GateSide


def load_json(text: str | None, path: str) -> dict | None:
    if text is None:
        return None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return loaded


# --- per-digit F1 -----------------------------------------------------------------------------


def per_digit_f1(classes: dict | None) -> dict[str, float]:
    if classes is None:
        return {}
    return {
        str(digit): float(figures["f1"])
        for digit, figures in classes.get("per_class", {}).items()
        if isinstance(figures, dict) and _number(figures.get("f1")) is not None
    }


def f1_changes(old: dict | None, new: dict | None, threshold: float) -> list[MetricRow]:
    """Digits whose F1 moved by ``threshold`` or more, by digit."""
    before, after = per_digit_f1(old), per_digit_f1(new)
    rows = []
    for digit in sorted(set(before) & set(after), key=lambda d: (len(d), d)):
        row = MetricRow(f"f1 of digit {digit}", before[digit], after[digit])
        if row.delta is not None and abs(row.delta) >= threshold - SAME:
            rows.append(row)
    return rows


# --- the curves and confusion matrices ---------------------------------------------------------


def read_history(text: str | None) -> dict[str, list[float]] | None:
    """history.csv's columns (epoch, loss, accuracy, val_loss, val_accuracy) as lists."""
    if text is None:
        return None
    columns: dict[str, list[float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return columns or None


def confusion_counts(text: str | None) -> np.ndarray | None:
    """confusion.csv's (actual, predicted) rows counted into a 10 x 10 matrix."""
    if text is None:
        return None
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for row in csv.DictReader(io.StringIO(text)):
        try:
            actual, predicted = int(row["actual"]), int(row["predicted"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= actual < NUM_CLASSES and 0 <= predicted < NUM_CLASSES:
            matrix[actual, predicted] += 1
    return matrix


# --- the champion rule ------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleOutcome:
    """The champion rule applied to these two: this side as candidate, the base as champion."""

    applies: bool  # False: this side was not handed off, the rule never looked at it
    promote: bool
    reason: str


_BASE = "BASE"


def apply_rule(
    parity_old: dict | None,
    parity_new: dict | None,
    digest_old: str | None,
    digest_new: str | None,
    drawn_old: tuple[float, str] | None = None,
    drawn_new: tuple[float, str] | None = None,
    tolerance: float = 0.0,
) -> RuleOutcome:
    """What ``tracking.champion.decide`` makes of this side against the base, with the
    test accuracy export compares (the parity report's ONNX accuracy) and dvc.lock's digest
    of the test split; and, when a side has a drawn test set, its accuracy there (``drawn``
    in metrics.json) with dvc.lock's digest of the feedback set it came from."""
    if parity_new is None:
        return RuleOutcome(False, False, "this side has no parity report: it was not exported")
    if not parity_new.get("passed"):
        return RuleOutcome(
            False, False, "this side failed the parity gate: it was not handed off, nor ranked"
        )
    new_accuracy = _number(parity_new.get("onnx_accuracy"))
    if new_accuracy is None:
        return RuleOutcome(False, False, "this side's parity report has no ONNX test accuracy")
    if digest_old is None or digest_new is None:
        digest_old = digest_new = "unknown"  # dvc.lock does not say: the same test data assumed
    candidate = Standing("THIS", new_accuracy, digest_new, *(drawn_new or (None, None)))
    champion = None
    if parity_old is not None and parity_old.get("passed"):
        champion = Standing(
            _BASE,
            _number(parity_old.get("onnx_accuracy")),
            digest_old,
            *(drawn_old or (None, None)),
        )
    decision = decide(candidate, champion, tolerance)
    reason = decision.reason.replace(f"champion v{_BASE}", "the base")
    if champion is None:
        reason = "the base has no handed-off model to defend the title"
    return RuleOutcome(True, decision.promote, reason)


# --- no change ----------------------------------------------------------------------------------


def unchanged(
    params_diff: Mapping,
    metrics_diff: Mapping,
    old_files: Mapping[str, bytes | None],
    new_files: Mapping[str, bytes | None],
) -> bool:
    """Nothing to review: no param changed, no figure of DVC's ``metrics diff --all`` moved,
    and every report file holds the same bytes on both sides."""
    if any(keys for keys in params_diff.values()):
        return False
    for figures in metrics_diff.values():
        if any(change.get("old") != change.get("new") for change in figures.values()):
            return False
    return all(old_files.get(path) == new_files.get(path) for path in old_files)

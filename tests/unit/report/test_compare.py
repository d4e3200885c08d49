"""The review's pure parts: which way a metric is better, deltas as the page shows them, the
champion rule on two sides' parity reports, per-digit F1 changes, the folder swap."""

from __future__ import annotations

import pytest

from report import compare
from report.folder import INDEX, replaced_folder
from report.page import delta, number


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("accuracy", 1),
        ("macro_f1", 1),
        ("macro_precision", 1),
        ("macro_recall", 1),
        ("argmax_agreement", 1),
        ("int8_accuracy", 1),
        ("loss", -1),
        ("val_loss", -1),
        ("latency_ms", -1),
        ("p95_latency_seconds", -1),
        ("max_abs_diff", -1),
        ("accuracy_drop", -1),  # a drop of accuracy: lower is better, though it says accuracy
        ("size_ratio", 0),
        ("samples", 0),
    ],
)
def test_which_way_a_metric_is_better(name: str, direction: int) -> None:
    assert compare.better_direction(name) == direction


@pytest.mark.parametrize(
    ("name", "old", "new", "verdict"),
    [
        ("accuracy", 0.95, 0.96, "better"),
        ("accuracy", 0.96, 0.95, "worse"),
        ("loss", 0.30, 0.20, "better"),
        ("loss", 0.20, 0.30, "worse"),
        ("latency_ms", 2.0, 3.0, "worse"),
        ("accuracy", 0.9831, 0.9831 + 1e-15, "same"),
        ("size_ratio", 3.9, 4.0, "changed"),
        ("int8_accuracy", None, 0.98, "new"),
        ("int8_accuracy", 0.98, None, "gone"),
    ],
)
def test_a_metric_row_says_better_or_worse(name, old, new, verdict) -> None:
    assert compare.MetricRow(name, old, new).verdict == verdict


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("accuracy", 0.0107, "+1.07 pts"),
        ("accuracy", -0.0107, "-1.07 pts"),
        ("accuracy", 0.00001, "+0.001 pts"),
        ("loss", -0.0014, "-0.0014"),
        ("loss", 0.05, "+0.05"),
        ("accuracy_drop", 0.002, "+0.20 pts"),
        ("loss", 0.0, "0"),
        ("loss", None, "—"),
    ],
)
def test_deltas_carry_their_sign(name, value, shown) -> None:
    assert delta(name, value) == shown


def test_numbers_as_the_page_shows_them() -> None:
    assert number("accuracy", 0.9831) == "98.31 %"
    assert number("loss", 0.056106614) == "0.05611"
    assert number("max_abs_diff", 8.344650268554688e-07) == "8.345e-07"
    assert number("accuracy_drop", -0.0001) == "-0.01 pts"
    assert number("loss", None) == "—"


def test_metric_rows_from_dvc_metrics_diff() -> None:
    diff = {
        "reports/metrics.json": {
            "macro_f1": {"old": 0.9, "new": 0.91, "diff": 0.01},
            "loss": {"old": 0.3, "new": 0.2, "diff": -0.1},
            "accuracy": {"old": 0.9, "new": 0.92, "diff": 0.02},
        },
        "reports/int8.json": {
            "int8_accuracy": {"old": 0.89, "new": 0.91},
            "method": {"old": "dynamic", "new": "dynamic"},
        },
        "reports/parity.json": {"onnx_accuracy": {"old": 0.9, "new": 0.92}},
    }
    rows = compare.metric_rows(diff, "reports/metrics.json", "reports/int8.json")
    assert [r.name for r in rows] == ["accuracy", "loss", "macro_f1", "int8_accuracy"]
    assert rows[0].delta == pytest.approx(0.02)


def test_param_rows_from_dvc_params_diff() -> None:
    diff = {
        "params.yaml": {
            "train.epochs": {"old": 15, "new": 5},
            "train.dropout": {"old": 0.3, "new": 0},
        }
    }
    rows = compare.param_rows(diff)
    assert [(r.name, r.old, r.new) for r in rows] == [
        ("train.dropout", 0.3, 0),
        ("train.epochs", 15, 5),
    ]


def _parity(accuracy: float, passed: bool = True) -> dict:
    return {"onnx_accuracy": accuracy, "passed": passed}


@pytest.mark.parametrize(
    ("old", "new", "digests", "applies", "promote", "reason"),
    [
        (
            _parity(0.95),
            _parity(0.96),
            ("a", "a"),
            True,
            True,
            "test accuracy 96.0000% beats the base's 95.0000%",
        ),
        (
            _parity(0.95),
            _parity(0.95),
            ("a", "a"),
            True,
            False,
            "test accuracy 95.0000% ties the base's 95.0000%",
        ),
        (
            _parity(0.95),
            _parity(0.94),
            ("a", "a"),
            True,
            False,
            "test accuracy 94.0000% is below the base's 95.0000%",
        ),
        (
            _parity(0.95),
            _parity(0.99),
            ("aaaa", "bbbb"),
            True,
            False,
            "the base was measured on other test data (aaaa…, candidate bbbb…): not comparable",
        ),
        (
            _parity(0.95),
            _parity(0.99),
            (None, "bbbb"),
            True,
            True,
            "test accuracy 99.0000% beats the base's 95.0000%",
        ),
        (
            None,
            _parity(0.9),
            ("a", "a"),
            True,
            True,
            "the base has no handed-off model to defend the title",
        ),
        (
            _parity(0.95, passed=False),
            _parity(0.9),
            ("a", "a"),
            True,
            True,
            "the base has no handed-off model to defend the title",
        ),
        (
            _parity(0.95),
            _parity(0.99, passed=False),
            ("a", "a"),
            False,
            False,
            "this side failed the parity gate: it was not handed off, nor ranked",
        ),
        (
            _parity(0.95),
            None,
            ("a", "a"),
            False,
            False,
            "this side has no parity report: it was not exported",
        ),
    ],
)
def test_the_champion_rule_on_two_sides(old, new, digests, applies, promote, reason) -> None:
    outcome = compare.apply_rule(old, new, *digests)
    assert (outcome.applies, outcome.promote, outcome.reason) == (applies, promote, reason)


@pytest.mark.parametrize(
    ("drawn_old", "drawn_new", "promote", "said"),
    [
        # a little worse on MNIST, better on the same drawn set, within the tolerance
        ((0.80, "f"), (0.90, "f"), True, "drawn"),
        # better on the drawn set by a point: enough, with MNIST within the tolerance
        ((0.80, "f"), (0.81, "f"), True, "drawn"),
        # the base measured on another feedback set: MNIST alone decides (0.949 < 0.95)
        ((0.80, "g"), (0.90, "f"), False, "MNIST test set alone decides"),
        # no drawn set on either side: today's rule
        (None, None, False, "below"),
    ],
)
def test_the_champion_rule_weighs_a_drawn_test_set(drawn_old, drawn_new, promote, said) -> None:
    outcome = compare.apply_rule(
        _parity(0.95), _parity(0.949), "a", "a", drawn_old, drawn_new, tolerance=0.002
    )
    assert outcome.applies and outcome.promote == promote, outcome.reason
    assert said in outcome.reason, outcome.reason
    beyond = compare.apply_rule(
        _parity(0.95), _parity(0.94), "a", "a", (0.80, "f"), (0.90, "f"), tolerance=0.002
    )
    assert not beyond.promote, beyond.reason


def test_f1_changes_at_or_above_the_threshold_only() -> None:
    def classes(f1: dict[str, float]) -> dict:
        return {"per_class": {d: {"f1": v} for d, v in f1.items()}}

    old = classes({"0": 0.90, "1": 0.90, "2": 0.90, "10": 0.5})
    new = classes({"0": 0.905, "1": 0.899, "2": 0.80, "10": 0.5})
    rows = compare.f1_changes(old, new, 0.005)
    assert [(r.name, r.verdict) for r in rows] == [
        ("f1 of digit 0", "better"),
        ("f1 of digit 2", "worse"),
    ]
    assert compare.f1_changes(old, None, 0.005) == []


def test_unchanged_needs_equal_params_figures_and_files() -> None:
    same_files = {"reports/metrics.json": b"{}", "reports/history.csv": b"epoch\n1\n"}
    steady = {"reports/metrics.json": {"accuracy": {"old": 0.9, "new": 0.9}}}
    assert compare.unchanged({}, steady, same_files, dict(same_files))
    assert not compare.unchanged(
        {"params.yaml": {"train.epochs": {}}}, steady, same_files, same_files
    )
    moved = {"reports/metrics.json": {"accuracy": {"old": 0.9, "new": 0.91}}}
    assert not compare.unchanged({}, moved, same_files, same_files)
    other = {**same_files, "reports/history.csv": b"epoch\n1\n2\n"}
    assert not compare.unchanged({}, steady, same_files, other)


def test_confusion_counts_and_history_columns() -> None:
    counts = compare.confusion_counts("actual,predicted\n3,3\n3,5\n7,7\n")
    assert counts.sum() == 3 and counts[3, 5] == 1 and counts[7, 7] == 1
    history = compare.read_history("epoch,loss,val_loss\n1,0.5,0.6\n2,0.3,0.4\n")
    assert history == {"epoch": [1.0, 2.0], "loss": [0.5, 0.3], "val_loss": [0.6, 0.4]}
    assert compare.read_history(None) is None and compare.confusion_counts(None) is None


def test_the_folder_is_replaced_whole_or_not_at_all(tmp_path) -> None:
    out = tmp_path / "review"
    with replaced_folder(out) as staging:
        (staging / INDEX).write_text("first")
    assert (out / INDEX).read_text() == "first"

    with pytest.raises(RuntimeError), replaced_folder(out) as staging:
        (staging / INDEX).write_text("half")
        raise RuntimeError("drawing failed")
    assert (out / INDEX).read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review"], "no staging left"

    with replaced_folder(out) as staging:
        (staging / INDEX).write_text("second")
    assert (out / INDEX).read_text() == "second"
    assert sorted(p.name for p in out.iterdir()) == [".gitignore", INDEX]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review"]

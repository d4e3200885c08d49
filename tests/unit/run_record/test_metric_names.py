import pytest

from stages.run_record import metric_names

PER_CLASS = {
    str(d): {"precision": d / 10, "recall": d / 20, "f1": d / 30, "support": d} for d in range(10)
}
HEADLINE = {
    "accuracy": 0.9,
    "loss": 0.3,
    "macro_precision": 0.8,
    "macro_recall": 0.7,
    "macro_f1": 0.75,
}


def test_evaluation_metrics_flatten_the_per_class_table() -> None:
    metrics = metric_names.evaluation_metrics(HEADLINE, PER_CLASS)
    assert len(metrics) == 5 + 3 * 10
    assert metrics[metric_names.TEST_ACCURACY] == 0.9
    assert metrics["test/macro_f1"] == 0.75
    assert metrics["test_by_digit/precision_7"] == 0.7
    assert metrics["test_by_digit/recall_4"] == 0.2
    assert metrics["test_by_digit/f1_3"] == pytest.approx(0.1)
    assert not any("support" in key for key in metrics)


@pytest.mark.parametrize(
    ("keras_key", "name"),
    [
        ("loss", "train/loss"),
        ("accuracy", "train/accuracy"),
        ("learning_rate", "train/learning_rate"),
        ("val_loss", metric_names.VAL_LOSS),
        ("val_accuracy", "val/accuracy"),
    ],
)
def test_epoch_metrics_split_into_train_and_val(keras_key: str, name: str) -> None:
    assert metric_names.epoch_metric(keras_key) == name


def test_test_sections_sort_first_as_mlflow_lists_them() -> None:
    names = [
        *metric_names.evaluation_metrics(HEADLINE, PER_CLASS),
        *metric_names.parity_metrics({"max_abs_diff": 1e-7, "argmax_agreement": 1.0}),
        *metric_names.training_summary({"best_epoch": 9, "fit_seconds": 30.0}),
        *metric_names.phase_timings({"fit": 30.0}),
        metric_names.epoch_metric("loss"),
        metric_names.epoch_metric("val_loss"),
    ]
    assert metric_names.PARITY_MAX_ABS_DIFF in names
    assert all(name.count("/") == 1 for name in names)
    sections = sorted({name.split("/")[0] for name in names})
    assert sections == ["test", "test_by_digit", "test_onnx", "timing", "train", "val"]
    first_section = sorted(name for name in names if name.startswith(sections[0] + "/"))
    assert first_section[0] == metric_names.TEST_ACCURACY

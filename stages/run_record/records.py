"""What the stages after train record in its run: test metrics and figures, the gates'
figures and verdicts, small texts. Keras-free, so they never reach TensorFlow.

train starts the run (``training_run``); evaluate, export and quantize reopen it
(``runs.reopen_run``) and log through the functions below; the registry steps of the
hand-off are in ``tracking.registry``. Metric and tag writes go through ``retry_locked``.

Each function takes what the stage's report file holds (``metrics.json`` with
``classes.json``, ``parity.json``, ``int8.json``), so a stage that DVC skipped is logged
from its files by the same code (``carried``). Each also says on the run how the record
got there: tag ``record.<stage>`` is ``ran`` when the stage logged it, or the note that
``carried`` gives when it was carried from the stage's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.run_record import metric_names
from stages.run_record.runs import flatten
from tracking.run_tags import output_md5_tag
from tracking.store import retry_locked

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# the stages after train, by their names in dvc.yaml
EVALUATE, EXPORT, QUANTIZE = "evaluate", "export", "quantize"
RAN = "ran"
# the key of evaluate's metrics.json under which the drawn test set's figures are
DRAWN = "drawn"


def record_tag(stage: str) -> str:
    """The tag that says whether ``stage`` logged its record itself or it was carried."""
    return f"record.{stage}"


def tag_record(stage: str, how: str) -> None:
    import mlflow

    retry_locked(lambda: mlflow.set_tag(record_tag(stage), how), f"tagging the {stage} record")


def log_evaluation(
    metrics: Mapping[str, Any],
    table: Mapping[str, Any],
    figures: Mapping[str, Figure | Path],
    record: str = RAN,
) -> None:
    """Test metrics, the whole report, the per-class table and the figures, into the open run.

    ``metrics`` is what ``metrics.json`` holds: the headline DVC compares (accuracy, loss,
    macro averages) and, under ``drawn``, the drawn test set's figures when there is one;
    ``table`` the rest of the report (``classes.json``: per class, confusion matrix).
    ``figures`` are drawn ones or their PNG files, logged under ``figures/<name>``.
    """
    import mlflow

    headline = {key: value for key, value in metrics.items() if key != DRAWN}
    report = {**headline, **table}
    scores = metric_names.evaluation_metrics(headline, table["per_class"])
    retry_locked(lambda: mlflow.log_metrics(scores), "logging test metrics")
    for name, figure in figures.items():
        retry_locked(lambda figure=figure, name=name: _log_figure(figure, name), f"logging {name}")
    retry_locked(lambda: mlflow.log_dict(report, "metrics.json"), "logging metrics.json")
    per_class = flatten({"per_class": dict(table["per_class"])})
    retry_locked(lambda: mlflow.log_dict(per_class, "per_class_metrics.json"), "logging per class")
    if metrics.get(DRAWN) is not None:
        log_drawn(metrics[DRAWN])
    tag_record(EVALUATE, record)


def _log_figure(figure: Figure | Path, name: str) -> None:
    import mlflow

    if isinstance(figure, Path):
        if figure.name != name:
            raise ValueError(f"{figure}: logged as figures/{name}, the file must be named so")
        mlflow.log_artifact(str(figure), "figures")
    else:
        mlflow.log_figure(figure, f"figures/{name}")


def log_drawn(figures: Mapping[str, float]) -> None:
    """The drawn test set's figures as ``test_drawn/*`` metrics of the open run."""
    import mlflow

    metrics = {f"test_drawn/{name}": float(value) for name, value in figures.items()}
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging the drawn test metrics")


def log_parity(report: Mapping[str, Any], failures: Sequence[str], record: str = RAN) -> None:
    """The gate's figures as ``test_onnx/*`` metrics, and its verdict as the ``parity`` tag.

    ``report`` is the parity report (``parity.json``, or its figures alone)."""
    import mlflow

    metrics = metric_names.parity_metrics(report)
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging parity metrics")
    retry_locked(lambda: mlflow.set_tag("parity", _verdict(failures)), "tagging the parity verdict")
    tag_record(EXPORT, record)


def log_int8(report: Mapping[str, Any], failures: Sequence[str], record: str = RAN) -> None:
    """The int8 gate's figures as ``test_int8/*`` metrics, its verdict as the ``int8`` tag.

    ``report`` is the int8 report (``int8.json``, or its figures alone)."""
    import mlflow

    metrics = metric_names.int8_metrics(report)
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging int8 metrics")
    retry_locked(lambda: mlflow.set_tag("int8", _verdict(failures)), "tagging the int8 verdict")
    tag_record(QUANTIZE, record)


def _verdict(failures: Sequence[str]) -> str:
    return "failed: " + "; ".join(failures) if failures else "passed"


def log_texts(texts: Mapping[str, str]) -> None:
    """Small text artifacts (the parity report, the model card) under the given names."""
    import mlflow

    for name, text in texts.items():
        mlflow.log_text(text, name)


def tag_output_md5s(md5s: Mapping[str, str]) -> None:
    """``dvc.md5.<path>`` tags: the md5 DVC records for each output (by its path in dvc.yaml),
    so a run leads to the files of the pipeline that made it. A path outside the working
    directory (a test's, not the pipeline's) is passed over."""
    import mlflow

    tags = {}
    for path, md5 in md5s.items():
        name = pipeline_path(path)
        if name is not None:
            tags[output_md5_tag(name)] = md5
    if tags:
        retry_locked(lambda: mlflow.set_tags(tags), "tagging the outputs' md5")


def pipeline_path(path: str | os.PathLike[str]) -> str | None:
    """``path`` as dvc.yaml names it (relative to the stage's working directory, with ``/``),
    or None when it lies outside."""
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return None
    if ".." in path.parts:
        return None
    return path.as_posix()

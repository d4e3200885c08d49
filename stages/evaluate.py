"""Stage ``evaluate``: test-set metrics, the confusion plot and figures, logged to the run.

It scores the handed-off ONNX model with onnxruntime, after export's parity gate has
shown that it answers as the Keras model does on every test image: the figures are
those of the model deployment gets, and the stage never pays for loading TensorFlow.
The model must be the one the run file names (its ``model_digest`` is the sha256 of
that run's ``.keras`` file).

Writes ``metrics.json`` (the headline figures: DVC metrics), ``classes.json`` (per-class
scores and the confusion matrix), ``confusion.csv`` (a DVC confusion plot)
and PNG figures, and logs all of them to the MLflow run that train started. When the
feedback set holds a drawn test part (digits people drew and corrected on the page), its
figures join them: ``drawn`` in ``metrics.json``, ``test_drawn/*`` in the run. The run is
tagged ``record.evaluate=ran`` and with the md5 of each file written (``dvc.md5.<path>``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernel.atomic import StagedFiles, json_text
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import EvaluateParams, load_params, stage_argument_parser
from kernel.timing import note_work_started
from stages.dataset.arrays import Split, load_split, split_file
from stages.dataset.feedback import load_feedback
from stages.evaluation.figures import (
    confusion_figure,
    misclassified_grid,
    save_figure,
    training_curves,
)
from stages.evaluation.metrics import (
    classification_report,
    confusion_csv,
    split_report,
)
from stages.handoff.handed_off import HandedOffModel, load_handed_off_model
from stages.handoff.onnx_runtime import run_onnx
from stages.model.history import read_history
from stages.run_record.dvc_lock import text_md5
from stages.run_record.records import DRAWN, log_evaluation, tag_output_md5s
from stages.run_record.runs import RunFile, locate_run, reopen_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Evaluation:
    report: dict
    confusion_csv: str
    figures: dict[str, Figure]


def evaluate_model(
    model: HandedOffModel, test: Split, history: dict[str, list[float]], params: EvaluateParams
) -> Evaluation:
    """Score the model on the test split and draw the figures; writes and logs nothing."""
    x_test, y_test = test
    probabilities = run_onnx(model.session, x_test)
    report = classification_report(y_test, probabilities)
    figures = {
        "training_curves.png": training_curves(history),
        "confusion_matrix.png": confusion_figure(np.asarray(report["confusion_matrix"])),
        "misclassified.png": misclassified_grid(
            x_test, y_test, probabilities, params.misclassified_shown
        ),
    }
    return Evaluation(report, confusion_csv(y_test, probabilities.argmax(axis=1)), figures)


def drawn_report(model: HandedOffModel, drawn: Split) -> dict[str, float] | None:
    """Accuracy and loss on the drawn test set, or None when there is none."""
    x_drawn, y_drawn = drawn
    if len(y_drawn) == 0:
        return None
    report = classification_report(y_drawn, run_onnx(model.session, x_drawn))
    return {"accuracy": report["accuracy"], "loss": report["loss"], "images": len(y_drawn)}


def model_of_the_run(path: Path, run_file: Path) -> HandedOffModel:
    """The ONNX model at ``path``, refused unless it was exported from the run file's model."""
    model = load_handed_off_model(path)
    trained = RunFile.read(run_file).model_sha256
    exported_from = model.metadata.get("model_digest", "")
    if exported_from != trained:
        raise CommandError(
            f"{path} was exported from the model with sha256 {exported_from[:12]}..., not from "
            f"{run_file}'s {trained[:12]}...; run the export stage first (dvc repro export)"
        )
    return model


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the handed-off ONNX model")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--history", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--metrics-out", required=True, type=Path, help="headline figures")
    parser.add_argument("--classes-out", required=True, type=Path, help="per class, confusion")
    parser.add_argument("--confusion-out", required=True, type=Path)
    parser.add_argument("--figures-dir", required=True, type=Path)
    parser.add_argument("--feedback", required=True, type=Path, help="the feedback stage's .npz")
    args = parser.parse_args(argv)
    params = load_params(args.params).evaluate
    history = read_history(args.history)
    test = load_split(split_file(args.data_dir, "test"))
    drawn = load_feedback(args.feedback)["drawn"]
    model = model_of_the_run(args.model, args.run_file)
    ref = locate_run(args.run_file)  # a dead server or a missing run fails here, before the work
    note_work_started("evaluate")
    evaluation = evaluate_model(model, test, history, params)
    report = evaluation.report
    drawn_figures = drawn_report(model, drawn)

    # the run gets everything first; the files then replace the previous ones together
    with reopen_run(ref), StagedFiles() as staged:
        headline, table = split_report(report)
        metrics = headline if drawn_figures is None else {**headline, DRAWN: drawn_figures}
        log_evaluation(metrics, table, evaluation.figures)
        texts = {
            args.metrics_out: json_text(metrics),
            args.classes_out: json_text(table),
            args.confusion_out: evaluation.confusion_csv,
        }
        tag_output_md5s({path: text_md5(text) for path, text in texts.items()})
        for name, figure in evaluation.figures.items():
            save_figure(figure, staged.path_for(args.figures_dir / name, ".png"))
        for path, text in texts.items():
            staged.write_text(path, text)
        staged.commit()
    drawn_text = (
        f"; drawn test accuracy {drawn_figures['accuracy']:.4f} on {drawn_figures['images']}"
        if drawn_figures is not None
        else ""
    )
    print(
        f"evaluate: test accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f} "
        f"on {report['samples']} images{drawn_text} (run {ref.run_id})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    exit_process(run_command("evaluate", main))

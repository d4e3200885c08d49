"""Stage ``train``: fit the classifier on the prepared splits and start its MLflow run.

Writes the Keras model, the per-epoch history (a DVC plot) and the run file that
``evaluate``, ``export`` and ``quantize`` reopen the run by. Before the outputs replace the
previous ones, the run gets the md5 dvc.lock gives the data it came from and the md5 of
what train writes, and the records of the stages after it that DVC will skip for this
model (``run_record.carried``). The tracking store is checked before
TensorFlow is even imported, so a dead server costs seconds, not a training.
The fitting itself is ``model.fit.train_model``; what the run records is
``run_record.training_run``; this module orders them and times each phase.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles
from kernel.cli import exit_process, run_command
from kernel.params import Params, load_params, stage_argument_parser
from kernel.timing import PhaseTimer, note_work_started
from stages.dataset.arrays import Split, load_splits, split_file
from stages.dataset.canonical import dataset_digest
from stages.dataset.feedback import load_feedback
from stages.model.history import history_csv
from stages.model.keras_io import write_keras_model
from stages.run_record.carried import carry_records
from stages.run_record.dvc_lock import file_md5, producers, read_lock, text_md5
from stages.run_record.runs import RunFile, RunRef, file_sha256
from stages.run_record.training_run import TrainingRun, data_inputs, start_training_run
from tracking.store import connect, get_or_create_experiment


@dataclass(frozen=True)
class TrainOutputs:
    model: Path
    history: Path
    run_file: Path


def splits_digest(splits: dict[str, Split]) -> str:
    """One digest of every prepared array: the run's ``data_digest`` tag."""
    return dataset_digest(
        {
            f"{kind}_{name}": array
            for name, (x, y) in splits.items()
            for kind, array in (("x", x), ("y", y))
        }
    )


def _announce(params: Params, splits: dict[str, Split], ref: RunRef) -> None:
    train = params.train
    print(
        f"train: fitting {train.architecture} {list(train.hidden_units)} on "
        f"{len(splits['train'][1]):,} images, validating on {len(splits['val'][1]):,}, up to "
        f"{train.epochs} epochs (MLflow run {ref.run_id})",
        file=sys.stderr,
        flush=True,
    )


def with_feedback(
    train: Split, feedback: dict[str, Split], weight: float
) -> tuple[Split, np.ndarray | None]:
    """The training split with the feedback's training part added at ``weight`` (and the
    sample weights), or the split as it was and None when the weight is 0 or there is none:
    then the fit is exactly the one without feedback."""
    x_extra, y_extra = feedback["train"]
    if weight == 0 or len(y_extra) == 0:
        return train, None
    x, y = train
    weights = np.concatenate(
        [np.ones(len(y), np.float32), np.full(len(y_extra), weight, np.float32)]
    )
    return (np.concatenate([x, x_extra]), np.concatenate([y, y_extra])), weights


def _load_data(params: Params, data_dir: Path, feedback_file: Path) -> tuple:
    """The splits, their digest, the feedback set, what the fit trains on (with the feedback
    set's training part and its weights, when used) and the run's data inputs."""
    splits = load_splits(data_dir)
    feedback = load_feedback(feedback_file)
    fit_split, sample_weight = with_feedback(
        splits["train"], feedback, params.feedback.train_weight
    )
    inputs = data_inputs(
        {name: str(split_file(data_dir, name)) for name in ("train", "val", "test")},
        splits,
        str(feedback_file),
        feedback,
        feedback_used=sample_weight is not None,
    )
    return splits, splits_digest(splits), feedback, fit_split, sample_weight, inputs


def _lineage_and_carried(
    run: TrainingRun,
    inputs: list[Path],
    written: dict[Path, str],
    run_file_path: Path,
    run_file: str,
) -> list[str]:
    """The md5 dvc.lock gives the data the model came from and the files train writes, as
    tags; then the records of the stages DVC will skip for this model, carried. The
    stage's working directory is the workspace, or an experiment's copy of it."""
    root = Path.cwd()
    lock = read_lock(root)
    run.tag_lineage({
        **producers(lock, [str(path) for path in inputs]),
        **{str(path): md5 for path, md5 in written.items()},
        str(run_file_path): text_md5(run_file),
    })  # fmt: skip
    return carry_records(root, lock, run_file_path, run_file)


def _import_tensorflow_and_mlflow() -> None:
    """Timed as a phase of its own, not inside the first call that needs them."""
    import mlflow  # noqa: F401

    from stages.model.runtime import import_tensorflow

    import_tensorflow()


def run_training(
    params: Params, data_dir: Path, outputs: TrainOutputs, feedback_file: Path
) -> RunRef:
    """Connect, load, fit, save and log; returns the run it logged. Timed by phase."""
    from stages.model.fit import train_model

    timer = PhaseTimer()
    with timer.phase("tracking_connect"):
        uri = connect()
        experiment_id = get_or_create_experiment(params.train.experiment_name, uri)
    with timer.phase("data_load_and_digest"):
        splits, digest, feedback, fit_split, sample_weight, inputs = _load_data(
            params, data_dir, feedback_file
        )
    with timer.phase("import_tensorflow_mlflow"):
        _import_tensorflow_and_mlflow()

    with contextlib.ExitStack() as open_run:
        with timer.phase("run_start_params_dataset"):
            run = open_run.enter_context(
                start_training_run(uri, experiment_id, params, digest, inputs)
            )
        run.tag_feedback(feedback, used=sample_weight is not None)
        _announce(params, splits, run.ref)
        note_work_started("train")
        with timer.phase("build_and_fit"):
            result = train_model(
                params.train,
                fit_split,
                splits["val"],
                callbacks=[run.epoch_logger()],
                verbose=1 if sys.stdout.isatty() else 2,
                sample_weight=sample_weight,
            )
        # outputs replace the previous ones together, and only once the run has them all
        staged = open_run.enter_context(StagedFiles())
        history = history_csv(result.history)
        with timer.phase("save_outputs"):
            model_file = staged.path_for(outputs.model, ".keras")
            write_keras_model(result.model, model_file)
            staged.write_text(outputs.history, history)
            model_sha256 = file_sha256(model_file)
        run.tag_model_digest(model_sha256)
        with timer.phase("mlflow_log_model"):
            run.log_result(result)
            run.log_model(result.model, splits["test"][0][:5], {outputs.history.name: history})
        run_file = RunFile(params.train.experiment_name, model_sha256).as_text()
        with timer.phase("dvc_lock_records"):
            written = {outputs.model: file_md5(model_file), outputs.history: text_md5(history)}
            carried = _lineage_and_carried(
                run, [data_dir, feedback_file], written, outputs.run_file, run_file
            )
        run.log_phases({**timer.seconds, "fit": result.fit_seconds})
        staged.write_text(outputs.run_file, run_file)
        staged.commit()
    _say_what_was_done(carried, timer)
    return run.ref


def _say_what_was_done(carried: list[str], timer: PhaseTimer) -> None:
    if carried:
        print(
            f"train: {', '.join(carried)}: record carried into the run from the files that "
            "dvc.lock shows were made for this model (a stage DVC reruns logs over it)",
            file=sys.stderr,
        )
    print(f"train: seconds by phase: {timer.summary()}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--model-out", required=True, type=Path)
    parser.add_argument("--history-out", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--feedback", required=True, type=Path, help="the feedback stage's .npz")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    outputs = TrainOutputs(model=args.model_out, history=args.history_out, run_file=args.run_file)
    ref = run_training(params, args.data_dir, outputs, args.feedback)
    print(f"train: MLflow run {ref.run_id} in {ref.tracking_uri}", file=sys.stderr)


if __name__ == "__main__":
    exit_process(run_command("train", main))

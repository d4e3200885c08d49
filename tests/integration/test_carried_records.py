"""A run whose later stages DVC skips still holds their records: train carries them in from
the files dvc.lock shows were made for this model (``run_record.carried``).

The evaluate record is compared with what the stage itself logged for the session's tiny
model: same metric names and values, same artifacts. Export's and quantize's are read from
reports of their real shapes (``ParityReport``, ``Int8Report``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from factories.dvc_lock import write_lock
from factories.mlflow_store import run_of_model, sigterm_kept, using_store
from factories.processes import stage_args
from factories.trained import Workspace, gated_onnx
from kernel.atomic import json_text
from kernel.paths import PROJECT_ROOT, pipeline_vars
from stages.handoff.int8_gate import Int8Report
from stages.handoff.parity import ParityReport
from stages.run_record import metric_names
from stages.run_record.carried import carried_note, carry_records
from stages.run_record.dvc_lock import read_lock
from stages.run_record.records import RAN, log_evaluation

WHERE = pipeline_vars()
EVALUATE_OUTS = ("metrics", "classes", "confusion", "figures")


@pytest.fixture(scope="module")
def evaluated(tiny_trained: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as dvc.yaml says, holding the tiny model's run file and ONNX model,
    and what ``evaluate.main`` wrote for it (it logged to the tiny model's run)."""
    from stages import evaluate

    folder = tmp_path_factory.mktemp("evaluated")
    shutil.copyfile(PROJECT_ROOT / "dvc.yaml", folder / "dvc.yaml")
    (folder / WHERE["run_file"]).parent.mkdir(parents=True)
    shutil.copyfile(tiny_trained.run_file, folder / WHERE["run_file"])
    onnx = gated_onnx(tiny_trained, folder / WHERE["onnx_model"])
    paths = {
        "onnx_model": onnx,
        "prepared": tiny_trained.data_dir,
        "history": tiny_trained.history,
        "run_file": WHERE["run_file"],
        # relative, as dvc.yaml gives them: the stage tags their md5 by these paths
        **{var: WHERE[var] for var in EVALUATE_OUTS},
    }
    with using_store(folder, tiny_trained.uri):
        evaluate.main(["--params", str(tiny_trained.params), *stage_args("evaluate", paths)])
    return folder


@pytest.fixture
def workspace(evaluated: Path, tmp_mlflow_store: str, tmp_path: Path) -> Path:
    """A copy of ``evaluated`` of this test's own, beside a store of its own."""
    return Path(shutil.copytree(evaluated, tmp_path / "workspace"))


def _lock_evaluate(root: Path, **upstream: tuple[list[str], list[str]]) -> dict:
    """A dvc.lock with evaluate's entry for the folder's run file and reports (and
    ``upstream``'s); the lock as YAML has it."""
    deps = [WHERE["run_file"], WHERE["onnx_model"]]
    entries = {**upstream, "evaluate": (deps, [WHERE[var] for var in EVALUATE_OUTS])}
    return yaml.safe_load(write_lock(root, entries).read_text())


def _carry(root: Path) -> tuple[list[str], object]:
    """A new run (as train starts one), given what it carries; the run as the store has it."""
    import mlflow

    run_file = root / WHERE["run_file"]
    with mlflow.start_run() as run:
        carried = carry_records(root, read_lock(root), run_file, run_file.read_text())
    return carried, mlflow.MlflowClient().get_run(run.info.run_id)


def _load_dict(run, name: str) -> dict:
    import mlflow

    return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{name}")


def _sections(metrics: dict[str, float], *prefixes: str) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if key.startswith(prefixes)}


def test_a_run_whose_evaluate_dvc_skips_gets_its_record(
    workspace: Path, tiny_trained: Workspace
) -> None:
    import mlflow

    _lock_evaluate(workspace)
    carried, run = _carry(workspace)
    assert carried == ["evaluate"]
    headline = json.loads((workspace / WHERE["metrics"]).read_text())
    assert run.data.metrics["test/accuracy"] == headline["accuracy"]

    # the same names and values as the stage logged into the tiny model's own run
    client = mlflow.MlflowClient(tiny_trained.uri)
    stage_run = client.get_run(tiny_trained.ref.run_id)
    logged = _sections(stage_run.data.metrics, "test/", "test_by_digit/")
    assert _sections(run.data.metrics, "test") == pytest.approx(logged)
    assert len(logged) == 5 + 3 * 10
    names = {"figures", "metrics.json", "per_class_metrics.json"}
    artifacts = {entry.path for entry in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert artifacts == names
    figures = {e.path for e in mlflow.MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert figures == {e.path for e in client.list_artifacts(stage_run.info.run_id, "figures")}
    for name in ("metrics.json", "per_class_metrics.json"):
        assert _load_dict(run, name) == _load_dict(stage_run, name), name

    tags = run.data.tags
    sources = (WHERE["metrics"], WHERE["classes"], WHERE["figures"])
    assert tags["record.evaluate"] == carried_note(sources)
    assert tags["record.evaluate"].startswith(f"carried from {WHERE['metrics']}")
    assert stage_run.data.tags["record.evaluate"] == RAN
    for var in ("metrics", "classes", "confusion"):
        md5 = hashlib.md5((workspace / WHERE[var]).read_bytes()).hexdigest()
        assert tags[f"dvc.md5.{WHERE[var]}"] == md5 == stage_run.data.tags[f"dvc.md5.{WHERE[var]}"]
    assert f"dvc.md5.{WHERE['figures']}" not in tags, "a folder's md5 is not checked, not tagged"


def test_a_stage_that_reruns_after_all_logs_over_the_carried_record(workspace: Path) -> None:
    import mlflow

    _lock_evaluate(workspace)
    run_file = workspace / WHERE["run_file"]
    metrics = json.loads((workspace / WHERE["metrics"]).read_text())
    table = json.loads((workspace / WHERE["classes"]).read_text())
    with mlflow.start_run() as run:
        assert carry_records(workspace, read_lock(workspace), run_file, run_file.read_text())
        log_evaluation({**metrics, "accuracy": 0.5}, table, {})
    logged = mlflow.MlflowClient().get_run(run.info.run_id).data
    assert logged.tags["record.evaluate"] == RAN
    assert logged.metrics["test/accuracy"] == 0.5


def test_the_drawn_test_sets_figures_are_carried_too(workspace: Path) -> None:
    path = workspace / WHERE["metrics"]
    drawn = {"accuracy": 0.75, "loss": 0.9, "images": 12}
    path.write_text(json_text({**json.loads(path.read_text()), "drawn": drawn}))
    _lock_evaluate(workspace)
    carried, run = _carry(workspace)
    assert carried == ["evaluate"]
    assert _sections(run.data.metrics, "test_drawn/") == {
        "test_drawn/accuracy": 0.75,
        "test_drawn/loss": 0.9,
        "test_drawn/images": 12.0,
    }


def _tamper_report(root: Path) -> None:
    path = root / WHERE["metrics"]
    path.write_text(json_text({**json.loads(path.read_text()), "accuracy": 0.1234}))


def _another_models_lock(root: Path, **upstream: tuple[list[str], list[str]]) -> dict:
    run_file = root / WHERE["run_file"]
    original = run_file.read_bytes()
    run_file.write_text(original.decode().replace('"model_sha256": "', '"model_sha256": "0'))
    lock = _lock_evaluate(root, **upstream)
    run_file.write_bytes(original)
    return lock


def _unreadable_report(root: Path) -> None:
    path = root / WHERE["classes"]
    path.write_text("{not json")
    _lock_evaluate(root)


def _report_missing(root: Path) -> None:
    (root / WHERE["confusion"]).unlink()


def _no_lock(root: Path) -> None:
    (root / "dvc.lock").unlink()


def _garbage_lock(root: Path) -> None:
    (root / "dvc.lock").write_text("stages: [this is: not, a lock\n")


@pytest.mark.parametrize(
    "spoil",
    [
        _tamper_report,  # its md5 differs from the lock's: DVC will run evaluate
        _another_models_lock,  # the lock's entry was made for another model
        _unreadable_report,  # in the lock, yet not a report: nothing to carry, no error
        _report_missing,
        _no_lock,  # a first run
        _garbage_lock,
    ],
)
def test_nothing_is_carried_unless_the_lock_vouches_for_this_model_and_its_files(
    workspace: Path, spoil
) -> None:
    _lock_evaluate(workspace)
    spoil(workspace)
    carried, run = _carry(workspace)
    assert carried == []
    assert not _sections(run.data.metrics, "test")
    assert not [key for key in run.data.tags if key.startswith(("record.", "dvc.md5."))]


def test_nothing_is_carried_for_a_run_file_other_than_dvc_yamls(workspace: Path) -> None:
    import mlflow

    _lock_evaluate(workspace)
    elsewhere = workspace / "elsewhere" / "run.json"
    elsewhere.parent.mkdir()
    shutil.copyfile(workspace / WHERE["run_file"], elsewhere)
    with mlflow.start_run():
        assert (
            carry_records(workspace, read_lock(workspace), elsewhere, elsewhere.read_text()) == []
        )
    (workspace / "dvc.yaml").unlink()
    run_file = workspace / WHERE["run_file"]
    with mlflow.start_run():
        assert carry_records(workspace, read_lock(workspace), run_file, run_file.read_text()) == []


def _parity_report() -> ParityReport:
    return ParityReport(
        samples=100,
        max_abs_diff=6.0e-7,
        mean_abs_diff=4.0e-9,
        argmax_agreement=1.0,
        keras_accuracy=0.93,
        onnx_accuracy=0.93,
        tolerance=1e-5,
        min_agreement=1.0,
        failures=(),
    )


def _int8_report() -> Int8Report:
    return Int8Report(
        samples=100,
        method="dynamic",
        calibration_images=0,
        fp32_accuracy=0.93,
        int8_accuracy=0.92,
        accuracy_drop=0.01,
        argmax_agreement=0.99,
        max_abs_diff=0.05,
        fp32_bytes=400_000,
        int8_bytes=100_000,
        max_accuracy_drop=0.02,
        min_agreement=0.98,
        max_probability_diff=0.1,
        failures=(),
    )


def test_export_and_quantize_records_are_carried_under_the_stages_names(workspace: Path) -> None:
    parity, int8 = _parity_report(), _int8_report()
    # the files as export and quantize write them (parity_record, int8_record)
    extras = {"onnxruntime_version": "1.0", "provider": "CPUExecutionProvider", "opset": 17}
    parity_text = json_text({**parity.as_dict(), **extras})
    int8_text = json_text({**int8.as_dict(), "onnxruntime_version": "1.0"})
    (workspace / WHERE["parity"]).write_text(parity_text)
    (workspace / WHERE["model_card"]).write_text("# Model card\n")
    (workspace / WHERE["int8_report"]).write_text(int8_text)
    (workspace / WHERE["int8_model"]).write_bytes(b"int8 onnx bytes")
    deps = [WHERE["run_file"], WHERE["model"]]
    (workspace / WHERE["model"]).write_bytes(b"keras bytes")
    write_lock(
        workspace,
        {
            "export": (deps, [WHERE["onnx_model"], WHERE["model_card"], WHERE["parity"]]),
            "quantize": ([WHERE["run_file"]], [WHERE["int8_model"], WHERE["int8_report"]]),
        },
    )
    carried, run = _carry(workspace)
    assert carried == ["export", "quantize"]
    # what export and quantize log: parity's float figures, the int8 report's figures
    as_export_logs = {k: v for k, v in parity.as_dict().items() if isinstance(v, float)}
    expected = {
        **metric_names.parity_metrics(as_export_logs),
        **metric_names.int8_metrics(int8.figures()),
    }
    assert run.data.metrics == pytest.approx(expected)
    assert "test_onnx/samples" not in run.data.metrics and "test_int8/samples" in expected
    tags = run.data.tags
    assert tags["parity"] == tags["int8"] == "passed"
    assert tags["record.export"] == carried_note((WHERE["parity"], WHERE["model_card"]))
    assert tags["record.quantize"] == carried_note((WHERE["int8_report"],))
    assert _load_dict(run, Path(WHERE["parity"]).name) == json.loads(parity_text)
    assert _load_dict(run, Path(WHERE["int8_report"]).name) == json.loads(int8_text)
    md5 = hashlib.md5(b"int8 onnx bytes").hexdigest()
    assert tags[f"dvc.md5.{WHERE['int8_model']}"] == md5


def test_train_tags_the_data_dvc_lock_says_it_came_from(
    evaluated: Path, tiny_trained: Workspace, tmp_mlflow_store: str, tmp_path: Path
) -> None:
    """``train.main`` on the tiny data, in a folder with a dvc.lock: the run gets the md5 of
    the data upstream (preprocess's entry) and of what train wrote; evaluate's entry, made
    for another model, is not carried. (That train carries what the lock vouches for is
    shown on a real clone's ``dvc repro`` in the end-to-end tests: retraining in this
    process need not give the same bytes.)"""
    import mlflow

    from stages import train

    folder = Path(shutil.copytree(evaluated, tmp_path / "retrain"))
    shutil.copytree(tiny_trained.data_dir, folder / WHERE["prepared"])
    shutil.copyfile(tiny_trained.params, folder / "params.yaml")
    lock = _another_models_lock(folder, preprocess=([], [WHERE["prepared"]]))
    with using_store(folder, tmp_mlflow_store), sigterm_kept():
        train.main(["--params", "params.yaml", *stage_args("train")])
        run = run_of_model(mlflow.MlflowClient(), folder / WHERE["run_file"])
    tags = run.data.tags
    assert tags[f"dvc.md5.{WHERE['prepared']}"] == lock["stages"]["preprocess"]["outs"][0]["md5"]
    written = hashlib.md5((folder / WHERE["run_file"]).read_bytes()).hexdigest()
    assert tags[f"dvc.md5.{WHERE['run_file']}"] == written
    assert "record.evaluate" not in tags and "test/accuracy" not in run.data.metrics

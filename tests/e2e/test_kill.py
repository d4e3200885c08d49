"""A stage killed mid-run: no half-written output, and no MLflow run left RUNNING for good.

Each test runs real stage processes on tiny data against a temporary store, so they
are marked slow (TensorFlow's import alone is seconds per process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories.data import digit_splits, write_prepared
from factories.mlflow_store import run_of_model
from factories.params import write_params
from factories.processes import stage_args
from kernel.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _start(module: str, args: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "MLFLOW_TRACKING_URI": uri,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def workspace(tmp_path: Path):
    import mlflow

    write_prepared(tmp_path / "prepared", digit_splits())
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    return tmp_path, uri, client


def _train_args(root: Path, params: Path) -> list[str]:
    return ["--params", str(params), *stage_args("train", {"prepared": root / "prepared"})]


def _running_runs(client, name: str):
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_train_killed_mid_fit_leaves_no_output_and_no_live_run(workspace, sig):
    root, uri, client = workspace
    endless = write_params(
        root / "endless.yaml",
        train={
            "hidden_units": [16],
            "epochs": 1000,
            "batch_size": 8,
            "early_stopping_patience": 0,
            "experiment_name": "killed",
        },
    )
    process = _start("stages.train", _train_args(root, endless), root, uri)
    try:
        _wait_for(
            lambda: any(
                client.get_metric_history(r.info.run_id, "train/loss")
                for r in _running_runs(client, "killed")
            )
        )
        killed_run = _running_runs(client, "killed")[0].info.run_id
        process.send_signal(sig)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert _leftovers(root / "models") == [], "a killed train leaves no model or run file"
    status = client.get_run(killed_run).info.status
    if sig == signal.SIGTERM:  # unwinds: the run is closed as failed at once
        assert process.returncode == 130 and status == "FAILED"
        return
    assert status == "RUNNING"  # SIGKILL: nothing could close it...

    short = write_params(
        root / "short.yaml",
        train={"hidden_units": [16], "epochs": 1, "batch_size": 32, "experiment_name": "killed"},
    )
    rerun = _start("stages.train", _train_args(root, short), root, uri)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    # ...so the next start of train ends it as FAILED, with the reason as a tag
    killed = client.get_run(killed_run)
    assert killed.info.status == "FAILED"
    assert "without closing" in killed.data.tags["pipeline.failure"]
    assert (root / "models/model.keras").is_file() and (root / "models/run.json").is_file()


def test_export_killed_leaves_no_onnx_and_a_rerun_completes(workspace):
    root, uri, client = workspace
    params = write_params(
        root / "params.yaml",
        train={
            "hidden_units": [16],
            "epochs": 2,
            "batch_size": 32,
            "experiment_name": "export-kill",
        },
        export={"registered_model_name": "kill-digits"},
    )
    trained = _start("stages.train", _train_args(root, params), root, uri)
    assert trained.wait(timeout=300) == 0, trained.stderr.read()
    ref = {"run_id": run_of_model(client, root / "models/run.json").info.run_id}
    export_args = ["--params", str(params), *stage_args("export", {"prepared": root / "prepared"})]
    process = _start("stages.export", export_args, root, uri)
    try:
        # killed once it holds the run: the run is RUNNING under the export's pid
        _wait_for(
            lambda: client.get_run(ref["run_id"]).data.tags.get("pipeline.pid") == str(process.pid)
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert not (root / "models/model.onnx").exists()
    assert not (root / "reports/parity.json").exists()
    assert [n for n in _leftovers(root / "models") if n.startswith(".")] == []

    rerun = _start("stages.export", export_args, root, uri)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert (root / "models/model.onnx").is_file()
    assert client.get_run(ref["run_id"]).info.status == "FINISHED"

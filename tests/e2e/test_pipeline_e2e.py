"""End to end: ``dvc repro`` through all six stages in a fresh git + DVC repo.

Tiny synthetic digits stand in for MNIST (fetch reads them from a local IDX
folder; a ``sitecustomize`` in the stage processes swaps the pinned digests for
theirs), MLflow points at a temporary SQLite store, and the test checks what
landed: outputs, metrics, the MLflow run and registry, parity, DVC's view of
the pipeline, and the TensorFlow-free predictor against Keras's answers.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from factories.mlflow_store import run_of_model, using_store
from factories.pipeline import repro_tiny_pipeline
from factories.tf_blocker import run_blocked
from harness.processes import run_in_repo, stage_command

STAGES = ("fetch", "preprocess", "train", "evaluate", "export", "quantize")
# the stages after train, which log into its run
DOWNSTREAM = ("export", "evaluate", "quantize")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return repro_tiny_pipeline(tmp_path_factory.mktemp("e2e"))


def test_repro_runs_every_stage(pipeline):
    first = pipeline["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    repo = pipeline["repo"]
    for out in (
        "data/raw/mnist.npz",
        "data/prepared/train.npz",
        "data/prepared/val.npz",
        "data/prepared/test.npz",
        "models/model.keras",
        "models/run.json",
        "models/model.onnx",
        "models/MODEL_CARD.md",
        "models/model.int8.onnx",
        "reports/data.json",
        "reports/history.csv",
        "reports/metrics.json",
        "reports/confusion.csv",
        "reports/parity.json",
        "reports/int8.json",
        "reports/figures/training_curves.png",
        "reports/figures/confusion_matrix.png",
        "reports/figures/misclassified.png",
    ):
        assert (repo / out).is_file(), out


def test_second_repro_does_nothing(pipeline):
    second = pipeline["second"]
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout


def test_raw_data_is_exactly_the_source(pipeline):
    with np.load(pipeline["repo"] / "data/raw/mnist.npz") as raw:
        for name, array in pipeline["arrays"].items():
            assert np.array_equal(raw[name], array), name


def test_model_learns_and_onnx_passes_parity(pipeline):
    repo = pipeline["repo"]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]
    classes = json.loads((repo / "reports/classes.json").read_text())
    assert np.asarray(classes["confusion_matrix"]).sum() == 200
    parity = json.loads((repo / "reports/parity.json").read_text())
    assert parity["max_abs_diff"] <= 1e-5
    assert parity["argmax_agreement"] == 1.0
    assert parity["onnx_accuracy"] == parity["keras_accuracy"] == metrics["accuracy"]
    assert parity["samples"] == 200
    int8 = json.loads((repo / "reports/int8.json").read_text())
    assert int8["passed"] and int8["samples"] == 200 and int8["size_ratio"] > 3
    assert int8["fp32_accuracy"] == parity["onnx_accuracy"]


def test_mlflow_run_holds_everything(pipeline):
    import mlflow

    repo, env = pipeline["repo"], pipeline["env"]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = run_of_model(client, repo / "models/run.json")
    ref = {"run_id": run.info.run_id}
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "8"
    assert run.data.params["train.hidden_units"] == "[128]"
    assert run.data.params["preprocess.val_size"] == "100"
    history = client.get_metric_history(ref["run_id"], "val/loss")
    assert [m.step for m in history] == list(range(1, 9)), "epochs count from 1, as in Keras"
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.metrics["test_onnx/max_abs_diff"] <= 1e-5
    assert run.data.tags["data_digest"] and run.data.tags["parity"] == "passed"
    artifacts = {a.path for a in client.list_artifacts(ref["run_id"])}
    assert {"figures", "history.csv", "metrics.json", "parity.json", "MODEL_CARD.md"} <= artifacts
    version = client.get_model_version_by_alias("mnist-digits", "candidate")
    assert version.run_id == ref["run_id"]
    int8 = client.get_model_version_by_alias("mnist-digits", "int8")
    assert int8.run_id == ref["run_id"] and int8.tags["fp32_version"] == str(version.version)
    assert run.data.tags["int8"] == "passed" and "test_int8/argmax_agreement" in run.data.metrics
    assert not (repo / "mlflow.db").exists(), "runs must go to MLFLOW_TRACKING_URI"
    # every stage ran and logged its record itself
    assert {stage: run.data.tags[f"record.{stage}"] for stage in DOWNSTREAM} == dict.fromkeys(
        DOWNSTREAM, "ran"
    )


def test_the_run_and_dvc_lock_lead_to_each_other(pipeline):
    """The run's data (MLflow datasets), and the md5 dvc.lock gives the files the model came
    from and those train and evaluate wrote: the same as DVC's."""
    import mlflow

    repo, env = pipeline["repo"], pipeline["env"]
    run = run_of_model(mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]), repo / "models/run.json")
    contexts = {
        {tag.key: tag.value for tag in given.tags}["mlflow.data.context"]: given.dataset
        for given in run.inputs.dataset_inputs
    }
    assert sorted(contexts) == ["test", "training", "validation"]
    assert json.loads(contexts["test"].source) == {"uri": "data/prepared/test.npz"}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    outs = {
        out["path"]: out["md5"]
        for stage in ("fetch", "preprocess", "train", "evaluate")
        for out in lock[stage]["outs"]
        if not out["md5"].endswith(".dir") or stage == "preprocess"
    }
    assert {
        "data/raw/mnist.npz",
        "data/prepared",
        "models/model.keras",
        "reports/metrics.json",
    } <= set(outs)
    tagged = {path: run.data.tags.get(f"dvc.md5.{path}") for path in outs}
    assert tagged == outs


def test_a_run_whose_later_stages_dvc_skips_gets_their_records(pipeline):
    """What train does for a model whose export, evaluate and quantize DVC will skip, on the
    real dvc.lock and files of the repro: a new run gets the records those stages logged
    into the model's run, under the same names, tagged as carried."""
    import mlflow

    from stages.run_record.carried import carry_records
    from stages.run_record.dvc_lock import read_lock
    from tracking.store import get_or_create_experiment

    repo, env = pipeline["repo"], pipeline["env"]
    uri = env["MLFLOW_TRACKING_URI"]
    client = mlflow.MlflowClient(uri)
    ran = run_of_model(client, repo / "models/run.json")
    run_file = repo / "models/run.json"
    with using_store(repo, uri):  # a run of an experiment of its own: the model's stays newest
        experiment = get_or_create_experiment("e2e-carried", uri)
        with mlflow.start_run(experiment_id=experiment) as started:
            carried = carry_records(repo, read_lock(repo), run_file, run_file.read_text())
    assert sorted(carried) == sorted(DOWNSTREAM)
    run = client.get_run(started.info.run_id)
    recorded = ("test/", "test_by_digit/", "test_onnx/", "test_int8/")
    expected = {k: v for k, v in ran.data.metrics.items() if k.startswith(recorded)}
    assert run.data.metrics == pytest.approx(expected)
    for stage in DOWNSTREAM:
        assert run.data.tags[f"record.{stage}"].startswith("carried from "), stage
    assert run.data.tags["parity"] == ran.data.tags["parity"] == "passed"
    assert run.data.tags["int8"] == ran.data.tags["int8"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    texts = ("metrics.json", "per_class_metrics.json", "parity.json", "MODEL_CARD.md", "int8.json")
    assert artifacts == {"figures", *texts}
    assert artifacts <= {a.path for a in client.list_artifacts(ran.info.run_id)}


def test_dvc_sees_metrics_plots_and_param_scope(pipeline):
    repo, env = pipeline["repo"], pipeline["env"]
    shown = run_in_repo(["dvc", "metrics", "show", "--json"], repo, env)
    assert shown.returncode == 0, shown.stderr
    assert "accuracy" in shown.stdout and "max_abs_diff" in shown.stdout
    plots = run_in_repo(["dvc", "plots", "show", "-o", str(repo.parent / "plots")], repo, env)
    assert plots.returncode == 0, plots.stderr
    assert (repo.parent / "plots" / "index.html").is_file()

    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["preprocess"]["seed"] = 7
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run_in_repo(["dvc", "status", "--json"], repo, env)
    finally:
        params_file.write_text(original)
    assert status.returncode == 0, status.stderr
    changed = json.loads(status.stdout)
    assert "preprocess" in changed and "fetch" not in changed


OUTPUT_FOLDERS = ("data/raw", "data/prepared", "models", "reports")


def _outputs(repo: Path) -> dict[str, bytes]:
    """Every pipeline output's bytes, by path."""
    return {
        str(path.relative_to(repo)): path.read_bytes()
        for folder in OUTPUT_FOLDERS
        for path in sorted((repo / folder).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


# (id, dvc exp run -S overrides, the stage that fails, its one error line's start)
FAILING_EXPERIMENTS = [
    (
        "bad-param-type",
        ["train.epochs=abc"],
        "train",
        "train: error: params.yaml: train.epochs = 'abc': expected a valid integer",
    ),
    (
        "bad-param-value",
        ["train.learning_rate=-1"],
        "train",
        "train: error: params.yaml: train.learning_rate = -1: expected a number > 0.0",
    ),
    (
        "missing-data-source",
        ["fetch.sources=[local]", "fetch.local_path=/nowhere/mnist"],
        "fetch",
        "fetch: error: no source gave MNIST: local: /nowhere/mnist: no such file or folder",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "stage", "error"),
    [case[1:] for case in FAILING_EXPERIMENTS],
    ids=[case[0] for case in FAILING_EXPERIMENTS],
)
def test_a_failed_experiment_keeps_every_last_good_output(pipeline, overrides, stage, error):
    import mlflow

    repo, env = pipeline["repo"], pipeline["env"]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("e2e").experiment_id
    runs_before = len(client.search_runs([experiment]))
    before = _outputs(repo)
    command = ["dvc", "exp", "run"]
    for override in overrides:
        command += ["-S", override]
    try:
        done = run_in_repo(command, repo, env)
    finally:  # -S edits the workspace's params.yaml
        run_in_repo(["git", "checkout", "--", "params.yaml"], repo, env)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{stage}: error:")]
    assert errors == [error], done.stderr[-2000:]
    assert len(client.search_runs([experiment])) == runs_before, "no run may start"
    assert _outputs(repo) == before, "DVC must not have deleted, nor the stage replaced, any"
    status = run_in_repo(["dvc", "status"], repo, env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_tampered_raw_data_is_noticed_and_rejected(pipeline, tmp_path):
    repo, env = pipeline["repo"], pipeline["env"]
    raw = repo / "data/raw/mnist.npz"
    original = raw.read_bytes()
    tampered = bytearray(original)
    tampered[len(original) // 2] ^= 0x01
    raw.write_bytes(bytes(tampered))
    try:
        status = json.loads(run_in_repo(["dvc", "status", "--json"], repo, env).stdout)
        paths = {
            "raw": raw,
            "prepared": tmp_path / "prepared",
            "data_report": tmp_path / "data.json",
        }
        rejected = run_in_repo([sys.executable, *stage_command("preprocess", paths)[1:]], repo, env)
    finally:
        raw.write_bytes(original)
    assert {"changed outs": {"data/raw/mnist.npz": "modified"}} in status["fetch"]
    assert "preprocess" in status
    assert rejected.returncode == 1
    assert rejected.stderr.strip().splitlines() == [rejected.stderr.strip()]
    assert "data/raw/mnist.npz: not a readable .npz file" in rejected.stderr
    assert not (tmp_path / "prepared").exists()


def test_predictor_without_tensorflow_agrees_with_keras(pipeline, tmp_path):
    repo = pipeline["repo"]
    with open(repo / "reports/confusion.csv", newline="") as handle:
        keras_digits = [int(row["predicted"]) for row in csv.DictReader(handle)]
    x_test = pipeline["arrays"]["x_test"]
    shown = list(range(12))
    pngs = []
    for index in shown:
        path = tmp_path / f"digit_{index}.png"
        Image.fromarray(x_test[index]).save(path)
        pngs.append(str(path))
    np.save(tmp_path / "digits.npy", x_test[:40])
    code = (
        "from digits_predict.cli import main; raise SystemExit(main(["
        f"'--json', '--model', {str(repo / 'models/model.onnx')!r}, "
        f"{str(tmp_path / 'digits.npy')!r}, *{pngs!r}]))"
    )
    result = run_blocked(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    by_input = {answer["input"]: answer["digit"] for answer in answers}
    npy = [by_input[f"{tmp_path / 'digits.npy'}[{i}]"] for i in range(40)]
    assert npy == keras_digits[:40], "same pixels must give Keras's digits exactly"
    png = [by_input[path] for path in pngs]
    agree = sum(a == keras_digits[i] for a, i in zip(png, shown, strict=True))
    assert agree >= len(shown) - 1, (png, [keras_digits[i] for i in shown])


def _runs_by_experiment_name(store_uri: str, experiment: str) -> dict[str, object]:
    import mlflow

    client = mlflow.MlflowClient(store_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {store_uri}"
    runs = client.search_runs([found.experiment_id])
    return {run.data.tags.get("dvc_exp_name"): run for run in runs}


def _without_tracking_env(pipeline) -> dict[str, str]:
    return {k: v for k, v in pipeline["env"].items() if k != "MLFLOW_TRACKING_URI"}


def _check_experiment_run(repo: Path, name: str, epochs: int) -> None:
    store = repo / "mlflow.db"
    assert store.is_file(), "experiment runs must land in the workspace's default store"
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db")), "a store inside a copy"
    run = _runs_by_experiment_name(f"sqlite:///{store}", "e2e")[name]
    assert run.data.params["train.epochs"] == str(epochs)
    assert run.info.status == "FINISHED"
    assert "test/accuracy" in run.data.metrics and "test_onnx/max_abs_diff" in run.data.metrics
    assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri()), run.info.artifact_uri


@pytest.mark.slow  # a whole pipeline run in a copy; workspace_root's unit tests cover the rule
def test_temp_experiment_lands_in_workspace_store(pipeline):
    """``--temp`` runs in a copy under .dvc/tmp/exps/, yet logs into <workspace>/mlflow.db."""
    repo, env = pipeline["repo"], _without_tracking_env(pipeline)
    temp = run_in_repo(
        ["dvc", "exp", "run", "--temp", "-n", "temp-exp", "-S", "train.epochs=2"], repo, env
    )
    assert temp.returncode == 0, temp.stdout[-2000:] + temp.stderr[-2000:]
    _check_experiment_run(repo, "temp-exp", 2)


@pytest.mark.slow
def test_queued_experiment_lands_in_workspace_store(pipeline):
    repo, env = pipeline["repo"], _without_tracking_env(pipeline)
    queued = run_in_repo(
        ["dvc", "exp", "run", "--queue", "-n", "queued-exp", "-S", "train.epochs=3"], repo, env
    )
    assert queued.returncode == 0, queued.stderr
    started = run_in_repo(["dvc", "queue", "start", "-j", "1"], repo, env)
    assert started.returncode == 0, started.stderr
    status = _wait_for_queue(repo, env, 600)
    assert "Success" in status, status
    _check_experiment_run(repo, "queued-exp", 3)


def _wait_for_queue(repo: Path, env: dict[str, str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        status = run_in_repo(["dvc", "queue", "status"], repo, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    run_in_repo(["dvc", "queue", "stop"], repo, env)
    return status


@pytest.mark.slow
def test_four_queued_experiments_two_at_a_time_lose_nothing(pipeline):
    """Two workers write to one SQLite store at once: no run lost to "database is locked"."""
    repo, env = pipeline["repo"], _without_tracking_env(pipeline)
    epochs = {f"parallel-{n}": n for n in (2, 3, 4, 5)}
    for name, count in epochs.items():
        queued = run_in_repo(
            ["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.epochs={count}"], repo, env
        )
        assert queued.returncode == 0, queued.stderr
    started = run_in_repo(["dvc", "queue", "start", "-j", "2"], repo, env)
    assert started.returncode == 0, started.stderr
    status = _wait_for_queue(repo, env, 900)
    assert status.count("Success") >= 4 and "Failed" not in status, status
    import mlflow

    store = f"sqlite:///{repo / 'mlflow.db'}"
    runs = _runs_by_experiment_name(store, "e2e")
    client = mlflow.MlflowClient(store)
    for name, count in epochs.items():
        run = runs[name]
        assert run.info.status == "FINISHED", name
        for metric in ("train/loss", "val/loss", "train/accuracy", "val/accuracy"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, count + 1)), (name, metric, steps)
        assert "test/accuracy" in run.data.metrics and "test_onnx/max_abs_diff" in run.data.metrics


@pytest.mark.slow  # trains a second model
def test_dvc_compares_a_committed_baseline_with_an_experiment(pipeline, tmp_path):
    repo, env = pipeline["repo"], pipeline["env"]
    for command in (["git", "add", "-A"], ["git", "commit", "-qm", "baseline results"]):
        done = run_in_repo(command, repo, env)
        assert done.returncode == 0, done.stderr
    assert run_in_repo(["git", "status", "--porcelain"], repo, env).stdout == "", (
        "all results committed"
    )
    ran = run_in_repo(
        ["dvc", "exp", "run", "-n", "smaller", "-S", "train.hidden_units=[32]"], repo, env
    )
    try:
        assert ran.returncode == 0, ran.stderr[-2000:]
        shown = json.loads(run_in_repo(["dvc", "exp", "show", "--json"], repo, env).stdout)
        found = {}
        for baseline in shown:
            for record in [baseline, *(baseline.get("experiments") or [])]:
                for revision in record.get("revs", [record]):
                    data = revision.get("data") or {}
                    metrics = data.get("metrics", {}).get("reports/metrics.json", {})
                    name = revision.get("name") or revision.get("rev")
                    if "data" in metrics:
                        found[name] = metrics["data"]["accuracy"]
        assert "smaller" in found and len(found) >= 2, shown

        diff = run_in_repo(["dvc", "metrics", "diff", "HEAD", "smaller", "--json"], repo, env)
        assert diff.returncode == 0, diff.stderr
        changes = json.loads(diff.stdout)
        assert "reports/metrics.json" in changes and "accuracy" in changes["reports/metrics.json"]

        plots = run_in_repo(
            ["dvc", "plots", "diff", "HEAD", "smaller", "--json", "-o", str(tmp_path / "p")],
            repo,
            env,
        )
        assert plots.returncode == 0, plots.stderr
        shown_plots = json.loads(plots.stdout)
        assert not shown_plots.get("errors"), shown_plots.get("errors")
        ids = set(shown_plots["data"])
        assert {"training_loss", "training_accuracy", "confusion"} <= ids
        assert not {"reports/history.csv", "reports/confusion.csv"} & ids, "each plot once"
        images = [i for i in ids if i.endswith(".png")]
        assert sorted(images) == sorted(
            f"reports/figures/{name}"
            for name in ("training_curves.png", "confusion_matrix.png", "misclassified.png")
        )
        # make compare, on the baseline and two experiments: in 120 columns, the headline
        # figures and both params that differ, none of the secondary figures or file hashes
        ran = run_in_repo(
            ["dvc", "exp", "run", "-n", "slower", "-S", "train.learning_rate=0.001",
             "-S", "feedback.train_weight=2"], repo, env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-2000:]
        shown = run_in_repo(
            [sys.executable, "-m", "tracking.experiments"], repo, {**env, "COLUMNS": "200"}
        )
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert max(len(line) for line in lines) <= 120, shown.stdout
        header = " ".join(lines[:4])
        # the third changed param (feedback.train_weight) is there too, its name cut to "…"
        # in 120 columns; tests/unit/tracking/test_experiments.py checks every section is kept
        columns = ("Experiment", "accuracy", "loss", "macro_f1", "hidden_units", "learning_r")
        for column in columns:
            assert column in header, shown.stdout
        for hidden in ("max_abs_diff", "reports/", "keras_accuracy", "Created", "epochs"):
            assert hidden not in shown.stdout, shown.stdout
        assert "smaller" in shown.stdout and "slower" in shown.stdout
    finally:  # back to the committed baseline
        run_in_repo(["dvc", "exp", "remove", "smaller", "slower"], repo, env)
        run_in_repo(["git", "checkout", "--", "."], repo, env)
        run_in_repo(["dvc", "checkout", "--force"], repo, env)


def _committed(repo, env) -> None:
    """Whatever the pipeline left uncommitted (dvc.lock, reports), committed."""
    if run_in_repo(["git", "status", "--porcelain"], repo, env).stdout:
        for command in (["git", "add", "-A"], ["git", "commit", "-qm", "the pipeline's results"]):
            done = run_in_repo(command, repo, env)
            assert done.returncode == 0, done.stderr


@pytest.mark.slow  # a second whole pipeline run, in a clone
def test_a_clone_with_a_store_of_its_own_reproduces_the_committed_lock(pipeline, tmp_path):
    """Nothing a store, a run or a clone's path decides reaches a tracked file: a clone of
    the committed results, with its own MLflow store, writes the same dvc.lock byte for byte
    and leaves git status clean. Then the recovery the docs give after a failed experiment
    puts params.yaml and the outputs back."""
    repo, env = pipeline["repo"], pipeline["env"]
    assert pipeline["first"].returncode == 0, pipeline["first"].stderr[-3000:]
    _committed(repo, env)
    clone, store = tmp_path / "clone", tmp_path / "store"
    store.mkdir()
    cloned = run_in_repo(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert cloned.returncode == 0, cloned.stderr
    clone_env = {
        **env,
        "PYTHONPATH": env["PYTHONPATH"].replace(str(repo), str(clone)),
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
    }
    ran = run_in_repo(["dvc", "repro"], clone, clone_env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert (clone / "dvc.lock").read_bytes() == (repo / "dvc.lock").read_bytes()
    assert run_in_repo(["git", "status", "--porcelain"], clone, clone_env).stdout == ""
    # evaluate's outputs are all committed: DVC skipped it, yet the clone's run is complete
    assert "Stage 'evaluate' didn't change, skipping" in ran.stdout, ran.stdout
    import mlflow

    run = run_of_model(
        mlflow.MlflowClient(clone_env["MLFLOW_TRACKING_URI"]), clone / "models/run.json"
    )
    metrics = json.loads((clone / "reports/metrics.json").read_text())
    assert run.data.metrics["test/accuracy"] == metrics["accuracy"]
    assert run.data.tags["record.evaluate"].startswith("carried from reports/metrics.json")
    assert run.data.tags["record.export"] == run.data.tags["record.quantize"] == "ran"
    int8 = json.loads((clone / "reports/int8.json").read_text())
    assert run.data.metrics["test_int8/int8_accuracy"] == int8["int8_accuracy"]
    assert "test_onnx/max_abs_diff" in run.data.metrics
    for name, value in metrics.get("drawn", {}).items():  # a drawn test set, if the clone has one
        assert run.data.metrics[f"test_drawn/{name}"] == value, name

    committed_params = (clone / "params.yaml").read_bytes()
    failed = run_in_repo(["dvc", "exp", "run", "-S", "train.epochs=abc"], clone, clone_env)
    assert failed.returncode != 0
    assert "train.epochs" in failed.stderr
    # docs/troubleshooting.md: back to the commit after a failed or unwanted experiment
    for command in (["git", "checkout", "--", "params.yaml"], ["dvc", "checkout", "--force"]):
        done = run_in_repo(command, clone, clone_env)
        assert done.returncode == 0, done.stderr
    assert (clone / "params.yaml").read_bytes() == committed_params
    status = run_in_repo(["dvc", "status", "--json"], clone, clone_env)
    assert json.loads(status.stdout) == {}, status.stdout
    assert run_in_repo(["git", "status", "--porcelain"], clone, clone_env).stdout == ""
    probe = (
        "from digits_predict import Predictor; import numpy as np; "
        "print(Predictor('models/model.onnx').predict(np.zeros((28, 28)) + 255).digits.shape)"
    )
    loaded = run_in_repo([sys.executable, "-c", probe], clone, clone_env)
    assert loaded.stdout.strip() == "(1,)", loaded.stderr

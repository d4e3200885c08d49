"""tracking and stages.run_record: where runs go, the run file, retries on a locked store,
abandoned runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.network import free_port
from kernel.cli import CommandError
from stages.run_record import runs
from stages.run_record.runs import (
    MODEL_DIGEST_TAG,
    RunFile,
    RunRef,
    fail_abandoned_runs,
    flatten,
    locate_run,
)
from tracking import store
from tracking.store import check_reachable, retry_locked, tracking_uri, workspace_root

# --- workspace root and store URI ----------------------------------------------------------------


def test_workspace_root_from_inside_an_experiment_copy(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "project"
    inside = root / ".dvc" / "tmp" / "exps" / "tmpabc" / "sub"
    inside.mkdir(parents=True)
    assert workspace_root(inside) == root
    assert workspace_root(root / ".dvc" / "tmp" / "exps") == root


@pytest.mark.parametrize("relative", ["", "stages", ".dvc/tmp", ".dvc/cache/exps"])
def test_workspace_root_is_the_folder_itself_outside_an_experiment_copy(
    tmp_path: Path, relative: str
) -> None:
    here = (tmp_path / relative).resolve()
    assert workspace_root(here) == here


def test_workspace_root_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpxyz"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert workspace_root() == tmp_path.resolve()


def test_tracking_uri_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri() == "http://mlflow.example:5000"


@pytest.mark.parametrize("env", [None, "", "   "])
def test_tracking_uri_defaults_to_an_absolute_sqlite_file_at_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    root = tmp_path.resolve()
    copy = root / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    expected_prefix = f"sqlite:///{root / 'mlflow.db'}"
    for start in (root, copy, copy / "stages"):
        uri = tracking_uri(start)
        assert uri.split("?")[0] == expected_prefix
        assert uri.startswith("sqlite:////")  # four slashes: an absolute path
    monkeypatch.chdir(copy)
    assert tracking_uri().split("?")[0] == expected_prefix


def test_artifacts_of_a_local_store_go_beside_it(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    copy = root / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    location = store.artifact_location(f"sqlite:///{root}/mlflow.db", start=copy)
    assert location == (root / "mlartifacts").as_uri()
    assert store.artifact_location("http://127.0.0.1:5000", start=copy) is None


# --- the run file --------------------------------------------------------------------------------


def test_the_run_file_holds_only_what_the_model_decides(tmp_path: Path) -> None:
    run_file = RunFile(experiment_name="mnist-mlp", model_sha256="a" * 64)
    path = tmp_path / "models" / "run.json"
    run_file.write(path)
    assert RunFile.read(path) == run_file
    # no run id, store path or time: the same training writes the same bytes everywhere
    assert json.loads(path.read_text()) == {
        "experiment_name": "mnist-mlp",
        "model_sha256": "a" * 64,
    }


def test_run_file_missing(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="run file not found") as caught:
        RunFile.read(tmp_path / "run.json")
    assert "\n" not in str(caught.value)


MALFORMED_RUN_FILES = [
    ("not-json", b"run_id: abc\n"),
    ("empty", b""),
    ("missing-key", json.dumps({"experiment_name": "abc"}).encode()),
    (
        "the-old-form",
        json.dumps({"run_id": "a", "experiment_id": "1", "tracking_uri": "x"}).encode(),
    ),
    ("a-list", b"[1, 2, 3]"),
    ("a-string", b'"abc"'),
    ("null", b"null"),
    ("binary", bytes(range(256)) * 4),
]


@pytest.mark.parametrize(
    "content", [c for _, c in MALFORMED_RUN_FILES], ids=[name for name, _ in MALFORMED_RUN_FILES]
)
def test_run_file_malformed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(CommandError, match="not a run file") as caught:
        RunFile.read(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "expected JSON with experiment_name, model_sha256" in message


def test_run_file_unreadable_path(tmp_path: Path) -> None:
    folder = tmp_path / "run.json"
    folder.mkdir()
    with pytest.raises(CommandError, match="run.json") as caught:
        RunFile.read(folder)
    assert "\n" not in str(caught.value)


def _tagged_run(uri: str, experiment_id: str, digest: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(experiment_id, tags={MODEL_DIGEST_TAG: digest}).info.run_id
    client.set_terminated(run_id)
    return run_id


def test_the_run_is_found_by_its_model_digest_newest_first(
    tmp_mlflow_store: str, tmp_path: Path
) -> None:
    from tracking.store import get_or_create_experiment

    experiment_id = get_or_create_experiment("digests", tmp_mlflow_store)
    _tagged_run(tmp_mlflow_store, experiment_id, "b" * 64)  # another model
    _tagged_run(tmp_mlflow_store, experiment_id, "a" * 64)  # the same model, trained before
    newest = _tagged_run(tmp_mlflow_store, experiment_id, "a" * 64)
    path = tmp_path / "run.json"
    RunFile("digests", "a" * 64).write(path)
    assert locate_run(path, tmp_mlflow_store) == RunRef(newest, experiment_id, tmp_mlflow_store)


@pytest.mark.parametrize(
    ("run_file", "why"),
    [
        (RunFile("digests", "c" * 64), "no run of experiment 'digests'"),
        (RunFile("no-such-experiment", "a" * 64), "no run of experiment 'no-such-experiment'"),
    ],
)
def test_a_run_file_no_run_answers_is_one_line_saying_what_to_do(
    tmp_mlflow_store: str, tmp_path: Path, run_file: RunFile, why: str
) -> None:
    from tracking.store import get_or_create_experiment

    _tagged_run(tmp_mlflow_store, get_or_create_experiment("digests", tmp_mlflow_store), "a" * 64)
    path = tmp_path / "run.json"
    run_file.write(path)
    with pytest.raises(CommandError, match=why) as caught:
        locate_run(path, tmp_mlflow_store)
    message = str(caught.value)
    assert "\n" not in message and "dvc repro -f train" in message


# --- flatten -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({}, {}),
        ({"a": 1}, {"a": 1}),
        ({"train": {"epochs": 5, "seed": 1}}, {"train.epochs": 5, "train.seed": 1}),
        ({"a": {"b": {"c": "x"}}}, {"a.b.c": "x"}),
        ({"train": {"hidden_units": [512, 256]}}, {"train.hidden_units": "[512, 256]"}),
        ({"train": {"conv_filters": ()}}, {"train.conv_filters": "[]"}),
        (
            {"fetch": {"local_path": None, "timeout_seconds": 1.5}},
            {"fetch.local_path": None, "fetch.timeout_seconds": 1.5},
        ),
    ],
)
def test_flatten(tree: dict, expected: dict) -> None:
    assert flatten(tree) == expected


# --- retry_locked --------------------------------------------------------------------------------


class FlakyAction:
    """Raises ``error`` the first ``failures`` calls, then returns ``value``."""

    def __init__(self, failures: int, error: Exception, value: object = "done") -> None:
        self.failures, self.error, self.value, self.calls = failures, error, value, 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(store.time, "sleep", waited.append)
    return waited


def _locked():
    from mlflow.exceptions import MlflowException

    return MlflowException("(sqlite3.OperationalError) database is locked\n[SQL: INSERT ...]")


def test_retry_locked_returns_the_value_after_failures(sleeps: list[float]) -> None:
    action = FlakyAction(failures=2, error=_locked(), value=42)
    assert retry_locked(action, "logging", attempts=5, first_wait=0.5) == 42
    assert action.calls == 3
    assert sleeps == [0.5, 1.0]


def test_retry_locked_gives_up_after_a_bounded_number_of_attempts(sleeps: list[float]) -> None:
    action = FlakyAction(failures=100, error=_locked())
    with pytest.raises(
        CommandError, match="MLflow: logging params failed: .*database is locked"
    ) as caught:
        retry_locked(action, "logging params", attempts=8, first_wait=0.25)
    assert action.calls == 8
    assert len(sleeps) == 7
    assert sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert "\n" not in str(caught.value)


def test_retry_locked_does_not_retry_other_mlflow_errors(sleeps: list[float]) -> None:
    from mlflow.exceptions import MlflowException

    action = FlakyAction(failures=1, error=MlflowException("RESOURCE_DOES_NOT_EXIST: no run"))
    with pytest.raises(CommandError, match="no run"):
        retry_locked(action, "logging")
    assert action.calls == 1
    assert sleeps == []


def _lost_insert_race():
    from mlflow.exceptions import MlflowException

    return MlflowException(
        "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique "
        'constraint "registered_model_alias_pk"\nDETAIL: Key (name, alias)=(m, champion)'
    )


def test_retry_locked_repeats_an_upsert_that_lost_an_insert_race(sleeps: list[float]) -> None:
    action = FlakyAction(failures=1, error=_lost_insert_race())
    assert retry_locked(action, "setting the registry alias", upsert=True) == "done"
    assert action.calls == 2
    assert sleeps == [0.25]


def test_retry_locked_does_not_repeat_a_plain_insert_on_a_duplicate_key(
    sleeps: list[float],
) -> None:
    action = FlakyAction(failures=1, error=_lost_insert_race())
    with pytest.raises(CommandError, match="registered_model_alias_pk"):
        retry_locked(action, "creating the model")
    assert action.calls == 1
    assert sleeps == []


def test_retry_locked_lets_other_exceptions_through(sleeps: list[float]) -> None:
    action = FlakyAction(failures=1, error=ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        retry_locked(action, "logging")
    assert action.calls == 1


# --- abandoned runs, reopening, experiments ------------------------------------------------------


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_fail_abandoned_runs(tmp_mlflow_store: str, dead_pid: int) -> None:
    import mlflow

    client = mlflow.MlflowClient(tmp_mlflow_store)
    experiment_id = store.get_or_create_experiment("abandoned", tmp_mlflow_store)

    def run(host: str, pid: int) -> str:
        tags = {"pipeline.host": host, "pipeline.pid": str(pid)}
        return client.create_run(experiment_id, tags=tags).info.run_id

    dead = run("this-host", dead_pid)
    alive = run("this-host", os.getpid())
    elsewhere = run("other-host", dead_pid)
    finished = run("this-host", dead_pid)
    client.set_terminated(finished, status="FINISHED")

    assert fail_abandoned_runs(client, experiment_id, "this-host") == [dead]
    status = {
        run_id: client.get_run(run_id).info.status for run_id in (dead, alive, elsewhere, finished)
    }
    assert status == {dead: "FAILED", alive: "RUNNING", elsewhere: "RUNNING", finished: "FINISHED"}
    assert client.get_run(dead).data.tags["pipeline.failure"].startswith("process ended")
    assert fail_abandoned_runs(client, experiment_id, "this-host") == []


def test_get_or_create_experiment_is_idempotent(tmp_mlflow_store: str, tmp_path: Path) -> None:
    import mlflow

    first = store.get_or_create_experiment("twice", tmp_mlflow_store)
    assert store.get_or_create_experiment("twice", tmp_mlflow_store) == first
    experiment = mlflow.MlflowClient(tmp_mlflow_store).get_experiment(first)
    assert experiment.artifact_location == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_reopen_run_of_an_unknown_run_is_one_clear_error(tmp_mlflow_store: str) -> None:
    experiment_id = store.get_or_create_experiment("reopen", tmp_mlflow_store)
    ref = RunRef(run_id="0" * 32, experiment_id=experiment_id, tracking_uri=tmp_mlflow_store)
    with pytest.raises(CommandError, match="cannot be reopened") as caught:
        with runs.reopen_run(ref):
            pytest.fail("the body must not run")
    assert "\n" not in str(caught.value)


def test_reopen_run_ends_failed_when_the_body_raises(tmp_mlflow_store: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tmp_mlflow_store)
    experiment_id = store.get_or_create_experiment("reopen", tmp_mlflow_store)
    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id, status="FINISHED")
    ref = RunRef(run_id=run_id, experiment_id=experiment_id, tracking_uri=tmp_mlflow_store)
    with runs.reopen_run(ref):
        mlflow.log_metric("reopened", 1.0)
    assert client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(CommandError, match="boom"), runs.reopen_run(ref):
        raise CommandError("boom")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics["reopened"] == 1.0


# --- check_reachable -----------------------------------------------------------------------------


def test_check_reachable_fails_fast_on_a_closed_port() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(CommandError, match="unreachable") as caught:
        check_reachable(uri, timeout=5.0)
    assert time.monotonic() - started < 5.0
    assert uri in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("uri", ["sqlite:////nowhere/mlflow.db", "databricks", "file:///x"])
def test_check_reachable_ignores_non_http_stores(uri: str) -> None:
    check_reachable(uri, timeout=0.1)  # returns without any connection attempt


def test_check_reachable_accepts_a_healthy_server(http_server) -> None:
    base, routes = http_server
    routes["/health"] = (b"OK", None, 200)
    check_reachable(base + "/", timeout=5.0)


def test_check_reachable_rejects_an_unhealthy_server(http_server) -> None:
    base, routes = http_server
    routes["/health"] = (b"down", None, 503)
    with pytest.raises(CommandError, match="unhealthy.*503"):
        check_reachable(base + "/", timeout=5.0)


# --- what names a run ----------------------------------------------------------------------------


def test_params_digest_names_the_params_set() -> None:
    from factories.params import params_dict
    from kernel.params import parse_params
    from stages.run_record.training_run import params_digest

    base = parse_params(params_dict())
    same = parse_params(params_dict())
    other = parse_params(params_dict(train={"epochs": 3}))
    assert params_digest(base) == params_digest(same)
    assert params_digest(base) != params_digest(other)
    assert len(params_digest(base)) == 8 and int(params_digest(base), 16) >= 0


def test_a_plain_repro_run_is_named_workspace_and_its_digest(
    tmp_mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from factories.params import params_dict
    from kernel.params import parse_params
    from stages.run_record.training_run import params_digest, start_training_run
    from tracking.store import get_or_create_experiment

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    params = parse_params(params_dict())
    experiment_id = get_or_create_experiment("naming", tmp_mlflow_store)
    with start_training_run(tmp_mlflow_store, experiment_id, params, "d" * 64, []) as run:
        run_id = run.ref.run_id
    logged = mlflow.MlflowClient(tmp_mlflow_store).get_run(run_id)
    assert logged.info.run_name == f"workspace-{params_digest(params)}"
    assert logged.data.tags["dvc_exp_name"] == "workspace"


def test_the_registry_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    order: list[str] = []
    first_in = threading.Event()

    def second() -> None:
        first_in.wait()
        with store.registry_lock(uri):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with store.registry_lock(uri):
        first_in.set()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the second holder waits"
        order.append("first out")
    thread.join(timeout=10)
    assert order == ["first out", "second in"]
    assert (tmp_path / "mlflow.db.registry-lock").exists()


def test_the_registry_lock_of_a_server_store_is_in_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with store.registry_lock("http://127.0.0.1:5000"):
        assert (tmp_path / ".dvc" / "tmp" / "registry-lock").exists()


def test_a_sweep_trial_run_is_a_child_of_the_sweep_run(
    tmp_mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from factories.params import params_dict
    from kernel.params import parse_params
    from stages.run_record.training_run import start_training_run
    from tracking.store import get_or_create_experiment

    experiment_id = get_or_create_experiment("sweeping", tmp_mlflow_store)
    client = mlflow.MlflowClient(tmp_mlflow_store)
    parent = client.create_run(experiment_id, run_name="sweep-1").info.run_id
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-1-2")
    monkeypatch.setenv("PIPELINE_SWEEP_NAME", "sweep-1")
    monkeypatch.setenv("PIPELINE_SWEEP_PARENT_RUN_ID", parent)
    params = parse_params(params_dict())
    with start_training_run(tmp_mlflow_store, experiment_id, params, "d" * 64, []) as run:
        run_id = run.ref.run_id
    tags = client.get_run(run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent and tags["sweep"] == "sweep-1"
    assert client.get_run(run_id).info.run_name == "sweep-1-2"

    monkeypatch.delenv("PIPELINE_SWEEP_NAME")
    monkeypatch.delenv("PIPELINE_SWEEP_PARENT_RUN_ID")
    with start_training_run(tmp_mlflow_store, experiment_id, params, "d" * 64, []) as run:
        alone = client.get_run(run.ref.run_id).data.tags
    assert "mlflow.parentRunId" not in alone and "sweep" not in alone


def test_the_registry_lock_is_the_named_file_that_clones_of_one_machine_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    shared = tmp_path / "node" / "registry.lock"
    shared.parent.mkdir()
    monkeypatch.setenv("PIPELINE_REGISTRY_LOCK", str(shared))
    monkeypatch.chdir(tmp_path)
    with store.registry_lock("http://127.0.0.1:5000"):
        with open(shared, "a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another clone's export waits
    assert not (tmp_path / ".dvc").exists()
    with open(shared, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released

"""Team mode: ``python -m team up`` in a project copy starts a real PostgreSQL, SeaweedFS S3
store and ``mlflow server`` with basic-auth on free loopback ports; clients log through it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from factories.data import digit_images, write_prepared
from factories.params import tiny_params_file
from factories.pipeline import rendered_mnist, tiny_pipeline_params
from factories.processes import error_lines, stage_args
from factories.team_stack import settings_of, tiny_team_stack
from harness.network import listening_addresses
from harness.team_stack import add_shared
from harness.team_stack import run as _run
from harness.workspace import project_copy


@pytest.fixture(scope="module")
def team():
    with tiny_team_stack() as stack:
        yield stack


def _stack_pids(repo: Path) -> set[int]:
    """The processes of the stack: each service's process group, and PostgreSQL's."""
    leaders = [int((repo / ".team" / "run" / f"{n}.pid").read_text()) for n in ("s3", "mlflow")]
    postmaster = int((repo / ".team" / "postgres" / "postmaster.pid").read_text().split()[0])
    shown = subprocess.run(["ps", "-eo", "pid=,pgid=,ppid="], capture_output=True, text=True)
    pids = {postmaster}
    for pid, group, parent in (map(int, line.split()) for line in shown.stdout.splitlines()):
        if group in leaders or parent == postmaster:
            pids.add(pid)
    return pids


def test_up_starts_every_service_on_loopback_and_again_changes_nothing(team):
    repo, env = team["repo"], team["env"]
    status = _run([sys.executable, "-m", "team", "status"], repo, env)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(": running") == 3
    pids = {name: (repo / ".team" / "run" / f"{name}.pid").read_text() for name in ("s3", "mlflow")}
    ours = listening_addresses(_stack_pids(repo))
    for name in ("TEAM_POSTGRES_PORT", "TEAM_S3_PORT", "TEAM_MLFLOW_PORT"):
        assert f"127.0.0.1:{env[name]}" in ours, (name, ours)
    assert all(address.startswith("127.0.0.1:") for address in ours), ours
    secrets = settings_of(team).secrets
    commands = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert not [value for value in secrets.values() if value in commands], "a secret in `ps`"

    again = _run([sys.executable, "-m", "team", "up"], repo, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == team["up"].stdout, "the same server, user and password"
    assert {
        name: (repo / ".team" / "run" / f"{name}.pid").read_text() for name in ("s3", "mlflow")
    } == pids, "nothing restarted"
    secrets = repo / ".team" / "settings.env"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    tracked = _run(["git", "status", "--porcelain", "--ignored"], repo, env).stdout
    assert "!! .team/" in tracked, "the stack's data is git-ignored"
    config = repo / ".dvc" / "config.local"
    assert oct(config.stat().st_mode & 0o777) == "0o600", "it holds the store's secret key"


def _train(team, tmp_path, **credentials):
    folder = tmp_path / "project"
    write_prepared(
        folder / "prepared",
        {"train": digit_images(60, 1), "val": digit_images(20, 2), "test": digit_images(20, 3)},
    )
    tiny_params_file(folder / "params.yaml")
    out = folder / "out"
    args = [
        sys.executable, "-m", "stages.train", "--params", str(folder / "params.yaml"),
        *stage_args("train", {"prepared": folder / "prepared", "model": out / "model.keras",
                              "history": out / "history.csv", "run_file": out / "run.json"}),
    ]  # fmt: skip
    env = {
        **team["env"],
        "PYTHONPATH": str(team["repo"]),
        "MLFLOW_TRACKING_URI": team["exports"]["MLFLOW_TRACKING_URI"],
        **credentials,
    }
    return _run(args, folder, env), out


@pytest.mark.parametrize(
    ("credentials", "refused"),
    [
        ({}, "refused no credentials (401 Unauthorized)"),
        (
            {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "password1234"},
            "refused user 'admin' with that password (401 Unauthorized)",
        ),
    ],
    ids=["anonymous", "wrong-password"],
)
def test_a_client_the_server_refuses_gets_one_401_line_before_training(
    team, tmp_path, credentials, refused
):
    done, out = _train(team, tmp_path, **credentials)
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and refused in lines[0], done.stderr
    assert "Epoch" not in done.stdout and not out.exists()


def test_a_reader_stops_before_training_with_one_line_naming_the_permission(team, tmp_path):
    rita = team["members"]["rita"]
    done, out = _train(
        team,
        tmp_path,
        **{k: rita[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")},
    )
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "user 'rita' may not" in lines[0] and "needs EDIT" in lines[0], lines
    assert "Epoch" not in done.stdout and not out.exists()


def test_a_member_without_s3_keys_logs_a_run_whose_artifacts_land_in_the_bucket(team, tmp_path):
    import mlflow

    from factories.mlflow_store import run_of_model

    exports = team["exports"]
    alice = team["members"]["alice"]
    member = {k: alice[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    done, out = _train(team, tmp_path, **member)
    assert done.returncode == 0, done.stderr[-3000:]
    os.environ.update(member)
    try:
        client = mlflow.MlflowClient(exports["MLFLOW_TRACKING_URI"])
        run = run_of_model(client, out / "run.json")
        run_id = run.info.run_id
        logged = {entry.path for entry in client.list_artifacts(run_id)}
    finally:
        for key in member:
            os.environ.pop(key)
    assert run.info.status == "FINISHED"
    assert run.info.user_id == "alice" and run.data.tags["mlflow.user"] == "alice"
    assert "test/accuracy" not in run.data.metrics and "train/loss" in run.data.metrics
    assert "history.csv" in logged

    from team.object_store import s3_client

    settings = settings_of(team)
    objects = s3_client(settings).list_objects_v2(Bucket="mlflow-artifacts")
    keys = [item["Key"] for item in objects.get("Contents", [])]
    assert any(run_id in key and key.endswith("history.csv") for key in keys), keys


def test_a_members_request_log_is_copied_to_the_team_bucket_and_read_back_elsewhere(team, tmp_path):
    """A served model's log in team mode: copied as a member's run artifacts (so into the
    bucket), read back on another machine by a reader; a reader's own server cannot copy,
    says so once, and keeps its log."""
    import mlflow
    import numpy as np

    from factories.team_stack import logged_in
    from monitor.log_settings import download_logs, log_copier
    from monitor.request_log import RequestLog, ServedModel
    from monitor.window import read_window
    from team.object_store import s3_client

    uri = team["exports"]["MLFLOW_TRACKING_URI"]
    alice, rita = team["members"]["alice"], team["members"]["rita"]
    images, labels = digit_images(30, seed=5)
    probabilities = np.eye(10)[labels]
    model = ServedModel("mnist-digits", "1", "champion")
    said: list[str] = []
    with logged_in(alice):
        shipper = log_copier(uri, "monitoring", "mlserver", model, every_seconds=0)
        log = RequestLog(tmp_path / "alice", "mlserver", shipper=shipper, warn=said.append)
        log.record(images[:10], probabilities[:10], model)
        log.flush()  # copied while it grows ...
        log.record(images[10:], probabilities[10:], model)
        log.close()  # ... and once more when closed
    assert said == []

    with logged_in(rita):  # another machine: a reader's
        assert download_logs(uri, "monitoring", tmp_path / "shared", keep_days=30) == 1
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("monitoring")
        (run,) = client.search_runs(
            [experiment.experiment_id], "tags.`monitor.role` = 'request-log'"
        )
    local, shared = read_window(tmp_path / "alice"), read_window(tmp_path / "shared")
    assert shared["digest"].tolist() == local["digest"].tolist() and len(shared) == 30
    assert run.data.tags["mlflow.user"] == "alice" and run.info.status == "FINISHED"
    assert run.data.tags["model.version"] == "mnist-digits v1"
    keys = [
        item["Key"]
        for item in s3_client(settings_of(team))
        .list_objects_v2(Bucket="mlflow-artifacts")
        .get("Contents", [])
    ]
    assert any(run.info.run_id in key and key.endswith(".jsonl") for key in keys), keys

    # `python -m monitor` in team mode reads the team's copy, not a local folder
    env = {**team["env"], **alice, "PYTHONPATH": str(team["repo"])}
    done = _run([sys.executable, "-m", "monitor", "--last", "50"], team["repo"], env)
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        f"monitor: error: 30 answers in the window (the last 50 answers in the request logs "
        f"copied to {uri}); at least 100 are needed to judge drift (monitor.min_requests)"
    ]

    said.clear()
    with logged_in(rita):
        shipper = log_copier(uri, "monitoring", "mlserver", model, every_seconds=0)
        log = RequestLog(tmp_path / "rita", "mlserver", shipper=shipper, warn=said.append)
        log.record(images, probabilities, model)
        log.close()
    assert len(said) == 1 and said[0].startswith("cannot copy requests-"), said
    assert "PERMISSION_DENIED" in said[0] or "403" in said[0], said
    assert len(read_window(tmp_path / "rita")) == 30, "the local log is whole"


def test_corrections_on_a_members_page_reach_the_training_machine_through_the_bucket(
    team, tmp_path, monkeypatch
):
    """Team mode's feedback store: the page's server copies each correction to the team's
    store; `python -m demo.feedback pull` on another machine brings the same files."""
    import importlib

    import numpy as np

    from factories.team_stack import logged_in
    from feedback.store import FeedbackStore
    from kernel.paths import PROJECT_ROOT
    from monitor.request_log import ServedModel

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    feedback = importlib.import_module("demo.feedback")
    uri = team["exports"]["MLFLOW_TRACKING_URI"]
    alice, rita = team["members"]["alice"], team["members"]["rita"]
    model = ServedModel("mnist-digits", "1", "champion")
    images, labels = digit_images(3, seed=8)
    with logged_in(alice):
        shipper = feedback.team_shipper(uri, "feedback", model)
        said: list[str] = []
        store = FeedbackStore(tmp_path / "alice")
        copies = feedback.TeamCopies(shipper, warn=said.append)
        for image, label in zip(images, labels, strict=True):
            correction = feedback.Correction(
                "alice-page-0001",
                model,
                image.astype(np.float32),
                int(label),
                (int(label) + 1) % 10,
            )
            kept = store.keep(correction.record())
            assert kept is not None
            copies.submit(kept)  # as the page's server does with each correction it keeps
        copies.close()
    assert said == []

    theirs = team["repo"] / "data" / "feedback-store"
    # a reader may read the team's corrections; demo/ is run from the checkout
    env = {**team["env"], **rita, "PYTHONPATH": str(PROJECT_ROOT)}
    done = _run([sys.executable, "-m", "demo.feedback", "pull"], team["repo"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"feedback: 3 corrections pulled from {uri} for review; data/feedback-store holds 0 "
        "accepted, "
        "3 waiting (python -m demo.feedback review)"
    )
    mine = {p.name: p.read_bytes() for p in (tmp_path / "alice" / "pending").glob("*.json")}
    assert len(mine) == 3
    assert {p.name: p.read_bytes() for p in (theirs / "pending").glob("*.json")} == mine
    assert not list(theirs.glob("*.json")), "pulled corrections wait for a person's review"
    again = _run([sys.executable, "-m", "demo.feedback", "pull"], team["repo"], env)
    assert again.stdout.strip().startswith("feedback: 0 corrections pulled"), again.stdout


def test_the_object_store_refuses_unsigned_and_wrongly_signed_requests(team):
    import boto3
    from botocore.exceptions import ClientError

    settings = settings_of(team)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{settings.s3_endpoint}/dvc-remote/", timeout=10)
    assert unsigned.value.code == 403
    wrong = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.secrets["TEAM_S3_ACCESS_KEY"],
        aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as signed:
        wrong.list_objects_v2(Bucket="dvc-remote")
    assert signed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_dvc_pushes_to_the_store_and_a_second_clone_pulls(team, tmp_path):
    repo, env = team["repo"], team["env"]
    data = repo / "data" / "shared.bin"
    data.write_bytes(os.urandom(100_000))
    for command in (
        ["dvc", "add", "data/shared.bin"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "shared data"],
        ["dvc", "push"],
    ):
        done = _run(command, repo, env)
        assert done.returncode == 0, (command, done.stderr)

    clone = tmp_path / "clone"
    assert _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env).returncode == 0
    shutil.copy2(repo / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    pulled = _run(["dvc", "pull", "data/shared.bin"], clone, env)
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "data" / "shared.bin").read_bytes() == data.read_bytes()


@pytest.mark.slow  # three trainings of the whole pipeline
def test_two_clones_share_one_server_one_remote_and_their_experiments(team, tmp_path):
    import mlflow

    exports = team["exports"]
    origin = tmp_path / "origin.git"
    assert _run(["git", "init", "-q", "--bare", str(origin)], tmp_path, team["env"]).returncode == 0

    def clone_env(repo: Path, member: str) -> dict[str, str]:
        _, stage_env = rendered_mnist(tmp_path, repo)
        # each clone its member's login; no S3 keys: the server proxies
        return {**team["env"], **stage_env, **team["members"][member]}

    def ok(command: list[str], repo: Path, env: dict[str, str]) -> str:
        done = _run(command, repo, env, timeout=900)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        return done.stdout

    first = tmp_path / "first"
    first_env = clone_env(first, "alice")
    project_copy(first, first_env, params=tiny_pipeline_params(tmp_path, "team-e2e"))
    add_shared(team, "experiment", "team-e2e")  # the admin makes what several members log to
    shutil.copy2(team["repo"] / ".dvc" / "config.local", first / ".dvc" / "config.local")
    ok(["dvc", "repro"], first, first_env)
    ok(["git", "add", "-A"], first, first_env)
    ok(["git", "commit", "-qm", "baseline"], first, first_env)
    ok(["git", "remote", "add", "origin", str(origin)], first, first_env)
    ok(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], first, first_env)
    ok(["dvc", "push"], first, first_env)
    ok(["dvc", "exp", "run", "-n", "smaller", "-S", "train.hidden_units=[32]"], first, first_env)
    ok(["dvc", "exp", "push", "origin", "smaller"], first, first_env)

    second = tmp_path / "second"
    ok(["git", "clone", "-q", "-b", "main", str(origin), str(second)], tmp_path, first_env)
    second_env = clone_env(second, "bob")
    shutil.copy2(team["repo"] / ".dvc" / "config.local", second / ".dvc" / "config.local")
    ok(["dvc", "pull"], second, second_env)
    repro = ok(["dvc", "repro"], second, second_env)
    assert "Running stage" not in repro, "pulled outputs match dvc.lock: nothing to redo"
    ok(["dvc", "exp", "pull", "origin", "smaller"], second, second_env)
    shown = ok(["dvc", "exp", "show", "--json"], second, second_env)
    assert '"smaller"' in shown
    ok(["dvc", "exp", "run", "-n", "wider", "-S", "train.hidden_units=[64]"], second, second_env)

    alice = team["members"]["alice"]
    member = {k: alice[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(member)
    try:
        client = mlflow.MlflowClient(exports["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("team-e2e")
        runs = client.search_runs([experiment.experiment_id])
    finally:
        for key in member:
            os.environ.pop(key)
    names = sorted(run.info.run_name for run in runs)
    assert names[:2] == ["smaller", "wider"] and names[2].startswith("workspace-"), names
    assert all(run.info.status == "FINISHED" for run in runs)
    assert all("test/accuracy" in run.data.metrics for run in runs)
    authors = {run.info.run_name: run.data.tags["mlflow.user"] for run in runs}
    assert authors["smaller"] == "alice" and authors["wider"] == "bob", authors
    roots = {run.data.tags.get("mlflow.source.name", "") for run in runs}
    assert any(str(first) in r for r in roots) and any(str(second) in r for r in roots), roots

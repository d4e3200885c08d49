"""``python -m sweep``: a sweep that cannot start says why in one line before any trial runs;
a real sweep on a local Ray head runs each trial as a DVC experiment, pushed to the team's
remote and logged to the team's MLflow server, and a second start resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.workspace import GIT_IDENTITY, project_copy

VENV_BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "DVC_"))}
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env['PATH']}", **GIT_IDENTITY, **extra}


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        args, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _ok(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = _run(args, cwd, env, timeout=900)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done.stdout


def _sweep(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return _run([sys.executable, "-m", "sweep", *args], cwd, env, timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep-project")
    return project_copy(root / "repo", _env(), folders=("sweep",))


@pytest.fixture
def clone(project: Path, tmp_path: Path) -> Path:
    """A clone of the project with a default DVC remote (a folder)."""
    repo = tmp_path / "clone"
    _ok(["git", "clone", "-q", str(project), str(repo)], tmp_path)
    _ok(["git", "remote", "remove", "origin"], repo)
    _ok(["dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "store")], repo)
    return repo


def _one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sweep: error: ")
    return lines[0]


def test_outside_a_git_repository(tmp_path: Path) -> None:
    assert "is not in a git repository" in _one_error(_sweep(tmp_path, "-S", "train.dropout=0.1"))


def test_uncommitted_code_or_params_are_refused_outputs_are_not(clone: Path) -> None:
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("dropout: 0.3", "dropout: 0.25"))
    line = _one_error(_sweep(clone, "-S", "train.dropout=0.1,0.2"))
    assert "uncommitted changes to params.yaml: trials run commit" in line
    assert "expected them committed" in line

    _ok(["git", "checkout", "--", "params.yaml"], clone)
    (clone / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what a dvc repro rewrites
    _ok(["git", "add", "dvc.lock"], clone)
    _ok(["git", "commit", "-qm", "lock"], clone)
    (clone / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n# rewritten\n")
    _ok(["dvc", "remote", "remove", "--local", "store"], clone)
    assert "no default DVC remote" in _one_error(_sweep(clone, "-S", "train.dropout=0.1,0.2"))


def test_a_bad_grid_is_refused_before_anything_runs(clone: Path) -> None:
    line = _one_error(_sweep(clone, "-S", "train.dropot=0.1,0.2"))
    assert "params.yaml has no key train.dropot" in line
    assert not (clone / ".dvc" / "tmp" / "sweeps").exists()
    assert _sweep(clone, "-S", "train.dropout=0.1", "--workers", "0").returncode == 2


def test_the_git_remote_must_exist_and_hold_the_commit(clone: Path, tmp_path: Path) -> None:
    line = _one_error(_sweep(clone, "-S", "train.dropout=0.1", "--git-remote", "team"))
    assert "--git-remote team: this clone has no such remote" in line
    bare = tmp_path / "origin.git"
    _ok(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    _ok(["git", "remote", "add", "origin", str(bare)], clone)
    line = _one_error(_sweep(clone, "-S", "train.dropout=0.1"))  # origin is the default
    assert "is not on origin, where trials clone it from" in line
    assert "expected it pushed (git push origin)" in line


def test_a_pushed_experiment_of_another_grid_is_not_taken_for_a_finished_trial(
    clone: Path,
) -> None:
    """A resumed sweep keeps a trial only when its experiment carries the same settings."""
    head = _ok(["git", "rev-parse", "HEAD"], clone).strip()
    (clone / "reports").mkdir(exist_ok=True)
    (clone / "reports" / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    _ok(["git", "add", "-f", "reports/metrics.json"], clone)
    tree = _ok(["git", "write-tree"], clone).strip()
    commit = _ok(
        ["git", "commit-tree", tree, "-p", head, "-m", "sweep mine: train.dropout=0.5"], clone
    ).strip()
    _ok(["git", "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/mine-1", commit], clone)
    _ok(["git", "reset", "-q"], clone)
    line = _one_error(_sweep(clone, "-S", "train.dropout=0.1,0.2", "--name", "mine"))
    assert "experiment mine-1 exists with other settings" in line
    assert "name this sweep anew (--name)" in line


def _experiment_refs(repo: Path, remote: str) -> dict[str, str]:
    listed = _ok(["git", "ls-remote", remote, "refs/exps/*"], repo)
    return {ref.rsplit("/", 1)[1]: sha for sha, ref in map(str.split, listed.splitlines())}


@pytest.mark.slow  # four trainings of the whole pipeline, the team stack and Ray
def test_a_sweep_on_ray_pushes_each_trial_logs_it_under_the_sweep_and_resumes(
    tmp_path: Path,
) -> None:
    import mlflow

    from factories.pipeline import rendered_mnist, tiny_pipeline_params
    from factories.ray_head import group_pids, ray_head
    from factories.team_stack import logged_in, tiny_team_stack
    from harness.network import listening_addresses

    params = tiny_pipeline_params(tmp_path, "sweep-e2e")
    with tiny_team_stack(folders=("team", "sweep"), params=params) as team:
        repo = team["repo"]
        _, stage_env = rendered_mnist(tmp_path, repo)
        # a member logs the trials; no S3 keys: the server proxies
        member = team["members"]["alice"]
        env = {**team["env"], **stage_env, **member}
        origin = tmp_path / "origin.git"
        _ok(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
        for command in (
            ["dvc", "repro"],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "baseline"],
            ["git", "remote", "add", "origin", str(origin)],
            ["git", "push", "-q", "origin", "HEAD:refs/heads/main"],
        ):
            _ok(command, repo, env)
        grid = ["-S", "train.dropout=0,0.1,0.2,1.5", "-S", "train.hidden_units=[32]"]

        with ray_head(env) as head:
            ray_env = {**env, **{k: v for k, v in head.items() if k != "group"}}
            done = _sweep(repo, *grid, "--name", "grid", env=ray_env, timeout=1500)
            listeners = listening_addresses(group_pids(int(head["group"])))
        hosts = {address.rsplit(":", 1)[0].strip("[]") for address in listeners}
        assert hosts and hosts <= {"127.0.0.1", "::ffff:127.0.0.1"}, listeners
        assert done.returncode == 1, done.stderr[-3000:]  # a trial failed, the others finished
        table = done.stdout.splitlines()
        assert [line.split()[:2] for line in table[:4]] == [
            ["grid-1", "finished"], ["grid-2", "finished"], ["grid-3", "finished"],
            ["grid-4", "failed"],
        ], done.stdout  # fmt: skip
        assert "train: error: params.yaml: train.dropout = 1.5: expected a number < 1.0" in table[3]
        assert "1 of 4 trials failed (above); run the same command again" in done.stderr
        best = table[-1]
        assert best.startswith("sweep: best trial grid-"), done.stdout
        assert "dvc exp apply grid-" in best and best.endswith("&& dvc pull")

        pushed = _experiment_refs(repo, "origin")
        assert sorted(pushed) == ["grid-1", "grid-2", "grid-3"]
        shown = json.loads(_ok(["dvc", "exp", "show", "--json"], repo, env))
        names = {
            rev["name"]
            for row in shown
            for experiment in row.get("experiments") or []
            for rev in experiment.get("revs", [])
        }
        assert {"grid-1", "grid-2", "grid-3"} <= names, names

        with logged_in(member):
            client = mlflow.MlflowClient(member["MLFLOW_TRACKING_URI"])
            experiment = client.get_experiment_by_name("sweep-e2e")
            runs = client.search_runs([experiment.experiment_id], "tags.sweep = 'grid'")
        parent = [run for run in runs if run.data.tags.get("sweep_role") == "parent"]
        trials = {run.info.run_name: run for run in runs if run not in parent}
        assert len(parent) == 1 and parent[0].info.status == "FAILED"
        assert parent[0].data.metrics["trials/failed"] == 1
        assert parent[0].data.params["sweep.swept"] == "train.dropout"
        assert sorted(trials) == ["grid-1", "grid-2", "grid-3"], "the failing one made no run"
        for run in trials.values():
            assert run.info.status == "FINISHED"
            assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
            assert run.data.tags["mlflow.user"] == "alice", "the member who ran the sweep"
            assert (
                "test/accuracy" in run.data.metrics and "test_onnx/max_abs_diff" in run.data.metrics
            )
        assert [trials[f"grid-{k}"].data.params["train.dropout"] for k in (1, 2, 3)] == [
            "0.0", "0.1", "0.2"
        ]  # fmt: skip
        best_name = best.split()[3].rstrip(":")
        assert parent[0].data.tags["best_trial"] == best_name
        assert trials[best_name].data.metrics["test/accuracy"] == max(
            run.data.metrics["test/accuracy"] for run in trials.values()
        )

        # the second start runs here, on a Ray of its own, and reruns only the failed trial
        again = _sweep(repo, *grid, "--name", "grid", env=env, timeout=600)
        assert again.returncode == 1, again.stderr[-3000:]
        assert "3 finished earlier, 1 to run" in again.stderr
        assert [line.split()[1] for line in again.stdout.splitlines()[:4]] == [
            "kept", "kept", "kept", "failed"
        ]  # fmt: skip
        assert _experiment_refs(repo, "origin") == pushed, "finished trials are not rerun"
        assert not (Path.home() / ".ray" / "auth_token").exists(), (
            "the local Ray's token stays in memory"
        )

        # the best trial, made the workspace's by the command the sweep printed
        for command in best.split(": ")[-1].split(" && "):
            _ok(command.split(), repo, env)
        status = _ok(["dvc", "status", "--json"], repo, env)
        assert json.loads(status) == {}, status
        accuracy = json.loads((repo / "reports" / "metrics.json").read_text())["accuracy"]
        assert f"test accuracy {accuracy:.4f}" in best
        assert (repo / "models" / "model.onnx").is_file()


def test_a_report_path_that_cannot_be_written_is_one_line(clone: Path, tmp_path: Path) -> None:
    """Every trial already pushed: the sweep writes its report and says where it could not."""
    head = _ok(["git", "rev-parse", "HEAD"], clone).strip()
    (clone / "reports").mkdir(exist_ok=True)
    (clone / "reports" / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    _ok(["git", "add", "-f", "reports/metrics.json"], clone)
    tree = _ok(["git", "write-tree"], clone).strip()
    message = "sweep done: train.dropout=0.1"
    commit = _ok(["git", "commit-tree", tree, "-p", head, "-m", message], clone).strip()
    _ok(["git", "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/done-1", commit], clone)
    _ok(["git", "reset", "-q"], clone)
    env = _env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    report = blocker / "report.json"
    done = _sweep(clone, "-S", "train.dropout=0.1", "--name", "done", "--report", str(report),
                  env=env)  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sweep: error: {blocker}") and "Traceback" not in done.stderr, last
    assert "best trial" not in done.stdout, "nothing claimed after the failure"

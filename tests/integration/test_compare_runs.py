"""``make compare RUN=1`` (``python -m tracking.experiments --runs``): each row of ``dvc exp
show`` with the MLflow run of its model, in a real git + DVC repository of a two-stage toy
pipeline (its "model" is a run file whose digest depends on a param) and a real store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from factories.mlflow_store import sqlite_uri
from harness.processes import run_in_repo
from harness.workspace import GIT_IDENTITY
from kernel.paths import PROJECT_ROOT
from tracking.experiments import WIDTH

RUN_FILE = "models/run.json"
TRAIN = (
    "python -c \"import hashlib, json, yaml; p = yaml.safe_load(open('params.yaml'))['train']; "
    "json.dump({'experiment_name': p['experiment_name'], "
    "'model_sha256': hashlib.sha256(str(p['epochs']).encode()).hexdigest()}, "
    "open('${run_file}', 'w'))\""
)
EVALUATE = (
    "python -c \"import json, yaml; p = yaml.safe_load(open('params.yaml'))['train']; "
    "json.dump({'accuracy': 0.9 + p['epochs'] / 100}, open('reports/metrics.json', 'w'))\""
)
PIPELINE = {
    "vars": [{"run_file": RUN_FILE}],
    "stages": {
        "train": {"cmd": TRAIN, "params": ["train.epochs"], "outs": ["${run_file}"]},
        "evaluate": {
            "cmd": EVALUATE,
            "deps": ["${run_file}"],
            "metrics": [{"reports/metrics.json": {"cache": False}}],
        },
    },
}

# a repo with three dvc repro / exp runs: 12 s of CPU, kept out of the fast suite's budget
pytestmark = pytest.mark.slow


def _ok(done) -> str:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _run_file(repo: Path) -> tuple[str, str]:
    """(the md5 DVC gives the workspace's run file, the model digest it holds)"""
    data = (repo / RUN_FILE).read_bytes()
    return hashlib.md5(data).hexdigest(), json.loads(data)["model_sha256"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> dict:
    """A committed baseline (epochs 1) and two experiments (2, 3), the workspace left at the
    last; a store holding the runs, each found by another of the ways a row leads to its run."""
    import mlflow

    repo = tmp_path_factory.mktemp("compare") / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "reports").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "MLFLOW_", "DVC_"))},
        **GIT_IDENTITY,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    (repo / "params.yaml").write_text(
        yaml.safe_dump({"train": {"epochs": 1, "experiment_name": "toy"}})
    )
    (repo / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    (repo / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "commit.gpgsign=false", "commit", "-qm", "baseline"],
    ):
        _ok(run_in_repo(command, repo, env))
    baseline_md5, _ = _run_file(repo)
    for name, epochs in (("exp-two", 2), ("exp-three", 3)):
        exp_run = ["dvc", "exp", "run", "-q", "-n", name, "-S", f"train.epochs={epochs}"]
        _ok(run_in_repo(exp_run, repo, env))
    _, three_digest = _run_file(repo)

    shutil.copyfile(mlflow_template_db, repo / "mlflow.db")
    client = mlflow.MlflowClient(sqlite_uri(repo))
    toy_id = client.create_experiment("toy")
    other_id = client.create_experiment("another")

    def run(experiment_id: str, **tags: str) -> str:
        return client.create_run(experiment_id, tags=tags).info.run_id

    runs = {
        # another experiment's run of the same model is not the row's
        "another": run(other_id, **{"dvc.md5.models/run.json": baseline_md5}),
        # the baseline's run: tagged with the md5 dvc.lock gives its run file (train tags it)
        "baseline": run(toy_id, **{"dvc.md5.models/run.json": baseline_md5}),
        # exp-two's: an older run, tagged with its experiment's name only; the newest wins
        "older-two": run(toy_id, dvc_exp_name="exp-two"),
        "exp-two": run(toy_id, dvc_exp_name="exp-two"),
        # exp-three's (and the workspace's): found by the model digest its run file holds
        "exp-three": run(toy_id, model_sha256=three_digest, dvc_exp_name="exp-three"),
    }
    branch = _ok(run_in_repo(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo, env)).strip()
    return {"repo": repo, "env": env, "runs": runs, "branch": branch}


def _compare(toy: dict, *args: str) -> list[str]:
    env = {**toy["env"], "COLUMNS": "200"}  # make's terminal: compare draws in 120 anyway
    done = run_in_repo([sys.executable, "-m", "tracking.experiments", *args], toy["repo"], env)
    return _ok(done).splitlines()


def _row(lines: list[str], first_word: str) -> str:
    (line,) = [line for line in lines if line.split()[:1] == [first_word] or first_word in line]
    return line


def test_each_row_names_its_run_in_120_columns(toy: dict) -> None:
    lines = _compare(toy, "--runs")
    assert max(len(line) for line in lines) <= WIDTH, "\n".join(lines)
    header = next(line for line in lines if "Experiment" in line)
    assert header.split()[-1] == "Run" and "accuracy" in header
    runs = toy["runs"]
    expected = {
        "workspace": runs["exp-three"],
        toy["branch"]: runs["baseline"],
        "[exp-two]": runs["exp-two"],
        "[exp-three]": runs["exp-three"],
    }
    for first_word, run_id in expected.items():
        assert _row(lines, first_word).split()[-1] == run_id[:8], "\n".join(lines)


def test_without_runs_the_table_is_dvcs_alone(toy: dict) -> None:
    lines = _compare(toy)
    assert "Run" not in " ".join(lines)
    assert not any(run_id[:8] in line for run_id in toy["runs"].values() for line in lines)

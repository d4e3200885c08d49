"""The workspace commands a user runs around experiments, through make as a user runs them:
``make reset`` back to the commit after a successful or a failed experiment (with DVC's
autostage on, as the project sets it), and Ctrl-C under ``make repro``.

A tiny pipeline in a git + DVC copy of the project, run with the test's venv (``VENV``) and
make's ``setup`` taken as done (``-o setup``): the venv is this one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factories.pipeline import repro_tiny_pipeline
from harness.processes import run_in_repo
from kernel.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow  # a tiny pipeline, then experiments and an interrupted fit

VENV = Path(sys.executable).parent.parent


def _ok(command: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = run_in_repo(command, repo, env)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    return done


def _as_a_user(env: dict[str, str]) -> dict[str, str]:
    """The environment without what an outer make (``make test-slow``) passes down: a make
    started under it would print its ``make[1]: Entering directory`` lines."""
    return {k: v for k, v in env.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def _make(target: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_in_repo(["make", "-o", "setup", target, f"VENV={VENV}"], repo, _as_a_user(env))


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The tiny pipeline's results committed, the project's Makefile and autostage in."""
    pipeline = repro_tiny_pipeline(tmp_path_factory.mktemp("workspace"))
    repo, env = pipeline["repo"], pipeline["env"]
    assert pipeline["first"].returncode == 0, pipeline["first"].stderr[-3000:]
    shutil.copy2(PROJECT_ROOT / "Makefile", repo / "Makefile")
    _ok(["dvc", "config", "core.autostage", "true"], repo, env)
    _ok(["git", "add", "-A"], repo, env)
    _ok(["git", "commit", "-qm", "the pipeline's results"], repo, env)
    return pipeline


def _assert_at_the_commit(repo: Path, env: dict[str, str], params: bytes) -> None:
    assert (repo / "params.yaml").read_bytes() == params
    assert run_in_repo(["git", "status", "--porcelain"], repo, env).stdout == ""
    status = _ok(["dvc", "status", "--json"], repo, env)
    assert json.loads(status.stdout) == {}, status.stdout
    probe = (
        "from digits_predict import Predictor; import numpy as np; "
        "print(Predictor('models/model.onnx').predict(np.zeros((28, 28)) + 255).digits.shape)"
    )
    loaded = run_in_repo([sys.executable, "-c", probe], repo, env)
    assert loaded.stdout.strip() == "(1,)", loaded.stderr


def _changed_params(repo: Path, **train) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["train"].update(train)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.parametrize(
    ("experiment", "succeeds"),
    [
        (["dvc", "exp", "run", "-S", "train.epochs=2"], True),
        (["dvc", "exp", "run", "-S", "train.epochs=abc"], False),
        (["dvc", "repro"], True),  # params edited by hand: autostage stages the new dvc.lock
    ],
    ids=["successful-experiment", "failed-experiment", "repro-of-edited-params"],
)
def test_make_reset_returns_the_workspace_to_the_commit_without_retraining(
    committed, experiment, succeeds
):
    repo, env = committed["repo"], committed["env"]
    params = (repo / "params.yaml").read_bytes()
    if experiment[1] == "repro":
        _changed_params(repo, epochs=2)
    ran = run_in_repo(experiment, repo, env)
    assert (ran.returncode == 0) is succeeds, ran.stderr[-2000:]
    assert run_in_repo(["git", "status", "--porcelain"], repo, env).stdout != ""
    if experiment[1] == "repro":  # what `git checkout -- .` alone would bring back
        staged = run_in_repo(["git", "diff", "--cached", "--name-only"], repo, env).stdout
        assert "dvc.lock" in staged, staged
    reset = _make("reset", repo, env)
    assert reset.returncode == 0, reset.stdout[-2000:] + reset.stderr[-2000:]
    assert "Running stage" not in reset.stdout + reset.stderr, "nothing retrained"
    assert reset.stdout.strip().endswith(
        "reset: the workspace is HEAD's: params, dvc.lock, reports and outputs"
    )
    _assert_at_the_commit(repo, env, params)


def test_make_reset_without_the_outputs_in_the_cache_says_so_in_one_line(committed, tmp_path):
    repo, env = committed["repo"], committed["env"]
    clone = tmp_path / "clone"
    _ok(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    reset = _make(
        "reset", clone, {**env, "PYTHONPATH": env["PYTHONPATH"].replace(str(repo), str(clone))}
    )
    assert reset.returncode != 0
    assert (
        "reset: HEAD's outputs are not in the DVC cache: dvc pull (or make repro)" in reset.stderr
    )


def test_ctrl_c_under_make_repro_shows_the_stages_line(committed):
    """A terminal's Ctrl-C is SIGINT to the foreground process group: make, the shell, DVC,
    the stage and the filter of DVC's lines alike."""
    repo, env = committed["repo"], committed["env"]
    params = (repo / "params.yaml").read_bytes()
    _changed_params(repo, epochs=500, early_stopping_patience=0)
    try:
        process = subprocess.Popen(
            ["make", "-o", "setup", "repro", f"VENV={VENV}"], cwd=repo, env=_as_a_user(env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group, as a terminal's foreground job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        shown = []
        deadline = time.monotonic() + 300
        for line in process.stdout:
            shown.append(line.rstrip("\n"))
            if line.startswith("Epoch 3/") or time.monotonic() > deadline:
                break
        assert any(line.startswith("Epoch 3/") for line in shown), "\n".join(shown[-30:])
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        shown += rest.splitlines()
    finally:
        (repo / "params.yaml").write_bytes(params)
    assert process.returncode != 0
    assert "Traceback" not in "\n".join(shown), "\n".join(shown[-30:])
    # the stage's line survives the filter; after it come only DVC's own line, as when
    # `dvc repro` runs directly, and GNU make's one line
    assert "train: interrupted" in shown, "\n".join(shown[-30:])
    after = [line for line in shown[shown.index("train: interrupted") + 1 :] if line]
    assert [line.split(":")[0] for line in after] == ["ERROR", "make"], after
    assert after[0].startswith("ERROR: failed to reproduce 'train'"), after

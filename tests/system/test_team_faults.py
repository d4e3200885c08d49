"""A service of the team stack dies under a member: one clear line, the last good outputs
kept, nothing on the server lost, and a rerun that completes once the service is back.

A real stack on loopback (``python -m team up``); the member trains with the train stage
as ``dvc repro`` runs it, on rendered digits big enough for a fit of several seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from factories.data import digit_images, write_prepared
from factories.params import write_params
from factories.processes import stage_args
from factories.team_stack import logged_in, settings_of, tiny_team_stack
from harness.team_stack import add_shared
from harness.team_stack import run as _run

OUTPUTS = ("model.keras", "history.csv", "run.json")
EXPERIMENT = "faults"


@pytest.fixture(scope="module")
def team():
    with tiny_team_stack() as stack:
        add_shared(stack, "experiment", EXPERIMENT)
        yield stack


@pytest.fixture(scope="module")
def project(team, tmp_path_factory):
    """Prepared data and params of a fit that lasts (many epochs, no early stop)."""
    folder = tmp_path_factory.mktemp("faults")
    splits = {"train": digit_images(2000, 1), "val": digit_images(200, 2)}
    write_prepared(folder / "prepared", {**splits, "test": digit_images(200, 3)})
    train = {"hidden_units": [64], "epochs": 400, "batch_size": 32, "learning_rate": 0.001,
             "dropout": 0.0, "early_stopping_patience": 400}  # fmt: skip
    train["experiment_name"] = EXPERIMENT
    write_params(folder / "params.yaml", preprocess={"val_size": 200}, train=train,
                 export={"registered_model_name": "mnist-digits"})  # fmt: skip
    write_params(folder / "quick.yaml", preprocess={"val_size": 200}, train={**train, "epochs": 3},
                 export={"registered_model_name": "mnist-digits"})  # fmt: skip
    return folder


@pytest.fixture(autouse=True)
def stack_back_up(team):
    """Whatever a test stopped is started again after it: the next test meets a whole stack."""
    yield
    _up(team)


def _train_command(project: Path, out: Path, params: str) -> list[str]:
    return [
        sys.executable, "-m", "stages.train", "--params", str(project / params),
        *stage_args("train", {"prepared": project / "prepared", "model": out / "model.keras",
                              "history": out / "history.csv", "run_file": out / "run.json"}),
    ]  # fmt: skip


def _env(team) -> dict[str, str]:
    return {**team["env"], **team["members"]["alice"], "PYTHONPATH": str(team["repo"]),
            "PYTHONUNBUFFERED": "1"}  # fmt: skip


def _good_outputs(team, project: Path, out: Path) -> dict[str, bytes]:
    done = _run(_train_command(project, out, "quick.yaml"), project, _env(team))
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the fit, whatever the tests inherited: a run of them started
    with ``&`` by a script (``make test-system &``, a CI runner) has SIGINT ignored, every
    child inherits that, and Python then installs no KeyboardInterrupt handler, so the fit
    ran to its last epoch after every Ctrl-C. A member's terminal sends it to a process
    whose SIGINT is at its default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train_until_epoch(team, project: Path, out: Path, epoch: int) -> subprocess.Popen:
    """The long fit, started and watched until it has logged ``epoch`` epochs."""
    process = subprocess.Popen(
        _train_command(project, out, "params.yaml"), cwd=project, env=_env(team),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith(f"Epoch {epoch}/"):
            return process
    raise AssertionError(f"the fit ended before epoch {epoch}: {process.stderr.read()[-3000:]}")


def _one_error(stderr: str) -> str:
    """The one error line a stage printed (its progress lines aside), and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _interrupt(process: subprocess.Popen, presses: int = 5) -> None:
    """Ctrl-C, and again while the fit goes on, as a member would."""
    # the epochs it still prints are read, so a full pipe never holds it up
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    drain.join(timeout=10)


def _finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def _runs(team) -> dict[str, tuple[str, dict]]:
    import mlflow

    with logged_in(team["members"]["alice"]):
        client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return {r.info.run_id: (r.info.status, dict(r.data.metrics)) for r in runs}


def _logged_steps(team, run_id: str, key: str) -> list[int]:
    import mlflow

    with logged_in(team["members"]["alice"]):
        client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
        return sorted(m.step for m in client.get_metric_history(run_id, key))


def _assert_nothing_lost(before: dict, after: dict) -> None:
    """Every run of before is still there with its metrics; one a killed stage left RUNNING
    may since have been closed as FAILED by the next train."""
    for run, (status, metrics) in before.items():
        assert run in after, f"run {run} lost"
        assert after[run][1] == metrics, f"metrics of run {run} changed"
        assert after[run][0] == status or (status, after[run][0]) == ("RUNNING", "FAILED")


def _up(team) -> None:
    done = _run([sys.executable, "-m", "team", "up"], team["repo"], team["env"])
    assert done.returncode == 0, done.stderr


def _assert_kept(out: Path, good: dict[str, bytes]) -> None:
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == good
    assert not [p for p in out.iterdir() if p.name not in OUTPUTS], list(out.iterdir())


def test_the_mlflow_server_killed_during_a_fit(team, project, tmp_path):
    out = tmp_path / "out"
    good = _good_outputs(team, project, out)
    before = _runs(team)
    process = _train_until_epoch(team, project, out, 3)
    leader = int((team["repo"] / ".team" / "run" / "mlflow.pid").read_text())
    os.killpg(leader, signal.SIGKILL)
    status, stderr = _finish(process)
    assert status == 1
    assert "MLflow" in _one_error(stderr)
    _assert_kept(out, good)

    _up(team)
    after_restart = _runs(team)
    _assert_nothing_lost(before, after_restart)
    done = _run(_train_command(project, out, "quick.yaml"), project, _env(team))
    assert done.returncode == 0, done.stderr[-3000:]
    final = _runs(team)
    killed = set(after_restart) - set(before)
    assert [final[run][0] for run in killed] == ["FAILED"], "the rerun closes the killed run"


def test_postgresql_restarted_during_a_fit(team, project, tmp_path):
    from team import postgres

    out = tmp_path / "out"
    good = _good_outputs(team, project, out)
    before = _runs(team)
    process = _train_until_epoch(team, project, out, 3)
    settings = settings_of(team)
    assert postgres.stop(settings)
    time.sleep(2)
    postgres.start(settings)
    # the fit goes on past the restart, logging each epoch
    for line in process.stdout:
        if line.startswith("Epoch 12/"):
            break
    else:
        raise AssertionError(f"the fit stopped at the restart: {process.stderr.read()[-3000:]}")
    _interrupt(process)  # the fit is long: stop it as a member would
    status, stderr = _finish(process)
    assert status != 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    _assert_kept(out, good)
    done = _run(_train_command(project, out, "quick.yaml"), project, _env(team))
    assert done.returncode == 0, done.stderr[-3000:]
    after = _runs(team)
    _assert_nothing_lost(before, after)
    interrupted = [run for run in after if run not in before and after[run][0] != "FINISHED"]
    assert len(interrupted) == 1
    # the epochs logged before, during and after the restart are all there
    assert _logged_steps(team, interrupted[0], "train/loss")[:11] == list(range(1, 12))


def test_the_object_store_stopped_during_a_runs_artifact_upload(team, project, tmp_path):
    from team import object_store

    out = tmp_path / "out"
    good = _good_outputs(team, project, out)
    before = _runs(team)
    settings = settings_of(team)
    process = _train_until_epoch(team, project, out, 2)
    assert object_store.stop(settings)  # the fit logs to PostgreSQL; the model goes to S3
    process.send_signal(signal.SIGINT)
    status, stderr = _finish(process)
    # a quick run: its fit ends, and its model upload meets the stopped store
    done = _run(_train_command(project, out, "quick.yaml"), project, _env(team))
    assert done.returncode == 1
    _one_error(done.stderr)
    _assert_kept(out, good)
    _up(team)
    done = _run(_train_command(project, out, "quick.yaml"), project, _env(team))
    assert done.returncode == 0, done.stderr[-3000:]
    after = _runs(team)
    _assert_nothing_lost(before, after)


def test_the_object_store_stopped_during_dvc_push(team, tmp_path):
    from team import object_store

    repo, env = team["repo"], team["env"]
    data = repo / "data" / "many"
    data.mkdir(parents=True)
    for index in range(8):  # 400 MB, one file at a time: seconds of pushing
        (data / f"part-{index}.bin").write_bytes(os.urandom(50_000_000))
    for command in (["dvc", "add", "data/many"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "many parts"]):  # fmt: skip
        assert _run(command, repo, env).returncode == 0
    push = subprocess.Popen(["dvc", "push", "-j", "1"], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(1.5)
    assert push.poll() is None, "the push ended before the store stopped"
    assert object_store.stop(settings_of(team))
    _, stderr = push.communicate(timeout=300)
    assert push.returncode != 0
    # DVC's own report, no traceback: a line per file it could not send and one summary, or,
    # stopped while it was still listing the remote, one line
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR")]
    assert "Traceback" not in stderr and errors, stderr[-3000:]
    if errors[-1].startswith("ERROR: failed to push data to the cloud"):
        assert all("failed to transfer" in line for line in errors[:-1]), stderr[-3000:]
    else:
        assert len(errors) == 1 and errors[0].startswith("ERROR: unexpected error"), stderr
    _up(team)
    again = _run(["dvc", "push"], repo, env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    status = _run(["dvc", "status", "--cloud", "--json"], repo, env)
    assert status.returncode == 0 and status.stdout.strip() in ("{}", ""), status.stdout


def test_the_server_restarted_between_train_and_export(team, project, tmp_path):
    from team import mlflow_server

    out = tmp_path / "out"
    _good_outputs(team, project, out)
    assert mlflow_server.stop(settings_of(team))
    exported = tmp_path / "exported"
    export = [
        sys.executable, "-m", "stages.export", "--params", str(project / "quick.yaml"),
        *stage_args("export", {"model": out / "model.keras", "prepared": project / "prepared",
                               "run_file": out / "run.json", "onnx_model": exported / "model.onnx",
                               "parity": exported / "parity.json",
                               "model_card": exported / "MODEL_CARD.md"}),
    ]  # fmt: skip
    down = _run(export, project, _env(team))
    assert down.returncode == 1 and "unreachable" in _one_error(down.stderr)
    assert not exported.exists()
    _up(team)
    done = _run(export, project, _env(team), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (exported / "model.onnx").exists()

"""The team's registry under load and after loss: two machines promoting at once, and a
backup restored into a new stack. A real stack on loopback (``python -m team up``)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories.team_stack import admin_login, logged_in, settings_of, tiny_team_stack
from harness.team_stack import run as _run

MODEL = "mnist-digits"
DIGEST = "d" * 64
ROUNDS = 10

# One exporter on its own machine: no lock shared with the other, only the server. Per
# round it registers a version of the given accuracy, says it is ready, waits for the
# go, and applies the champion rule as export does. It registers the next round's version
# only once the test has checked this round: a version registered while the other exporter
# still settles this round is one that settle may rightly move @champion to.
EXPORTER = r"""
import json, os, sys, time
from pathlib import Path
import mlflow
from tracking.champion import Standing, promote
from tracking.registry import MlflowRegistry

folder, me, plan = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
client = mlflow.MlflowClient()
experiment = client.get_experiment_by_name("mnist").experiment_id
for round_, accuracy in enumerate(plan):
    while round_ and not (folder / f"checked-{round_ - 1}").exists():
        time.sleep(0.002)
    run = client.create_run(experiment, tags={"mlflow.user": me})
    tags = {"precision": "fp32", "test_accuracy": repr(accuracy),
            "test_data_digest": "DIGEST", "registered_by": me, "handed_off": "true"}
    version = client.create_model_version("MODEL", f"{run.info.artifact_uri}/model",
                                          run.info.run_id, tags=tags).version
    # whole or absent: the test reads the version as soon as the file is there
    (folder / f"ready-{me}.tmp").write_text(str(version))
    os.replace(folder / f"ready-{me}.tmp", folder / f"ready-{round_}-{me}")
    while not (folder / f"go-{round_}").exists():
        time.sleep(0.002)
    promote(MlflowRegistry("MODEL"), Standing(str(version), accuracy, "DIGEST"), "champion",
            program="export", by=me)
    (folder / f"done-{round_}-{me}").write_text("")
""".replace("DIGEST", DIGEST).replace("MODEL", MODEL)


@pytest.fixture(scope="module")
def team():
    with tiny_team_stack() as stack:
        yield stack


def _wait_for(paths: list[Path], processes: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        for process in processes:
            assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {[p.name for p in paths if not p.exists()]}"
        time.sleep(0.01)


def test_two_machines_promoting_at_once_leave_the_champion_on_the_best_version(team, tmp_path):
    import mlflow

    rng = random.Random(7)
    members = ("alice", "bob")
    # every round beats the last one's best, so both exporters mean to promote
    plans = {m: [] for m in members}
    for round_ in range(ROUNDS):
        base = 0.90 + 0.005 * round_
        pair = [base + 0.001, base + 0.002]
        rng.shuffle(pair)
        for member, accuracy in zip(members, pair, strict=True):
            plans[member].append(accuracy)
    processes = []
    for member in members:
        env = {**team["env"], **team["members"][member], "PYTHONPATH": str(team["repo"])}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", EXPORTER, str(tmp_path), member, json.dumps(plans[member])],
                env=env,
                cwd=team["repo"],
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    try:
        with logged_in(admin_login(team)):
            client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
            _follow_rounds(client, members, plans, processes, tmp_path)
    except BaseException:
        for process in processes:  # one that failed leaves the other waiting for its go
            process.kill()
        raise
    finally:
        for process in processes:
            process.wait(timeout=60)
    assert all(process.returncode == 0 for process in processes)


def _follow_rounds(client, members, plans, processes, tmp_path) -> None:
    """Let each round's exporters go together; then @champion must be on the round's best."""
    for round_ in range(ROUNDS):
        _wait_for([tmp_path / f"ready-{round_}-{m}" for m in members], processes)
        versions = {m: (tmp_path / f"ready-{round_}-{m}").read_text() for m in members}
        (tmp_path / f"go-{round_}").write_text("")
        _wait_for([tmp_path / f"done-{round_}-{m}" for m in members], processes)
        best = max(members, key=lambda m: plans[m][round_])
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert champion.version == versions[best], (round_, versions, plans)
        assert champion.tags["registered_by"] == best
        (tmp_path / f"checked-{round_}").write_text("")


# --- backup and restore -------------------------------------------------------------------------


def _contents(team) -> dict:
    """What a restore must bring back, read through the server and the store."""
    import mlflow

    from team.object_store import s3_client

    with logged_in(admin_login(team)):
        client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("mnist").experiment_id
        runs = {
            run.info.run_id: (run.info.user_id, run.data.metrics, run.data.tags.get("mlflow.user"))
            for run in client.search_runs([experiment])
        }
        versions = {
            v.version: (v.run_id, v.tags.get("registered_by"), v.tags.get("test_accuracy"))
            for v in client.search_model_versions(f"name = '{MODEL}'")
        }
        aliases = dict(client.get_registered_model(MODEL).aliases)
        users = sorted(
            (u["username"], tuple(sorted(r["name"] for r in u.get("roles", []))))
            for u in _admin_users(team)
        )
    store = s3_client(settings_of(team))
    objects = {}
    for bucket in ("mlflow-artifacts", "dvc-remote"):
        for item in store.list_objects_v2(Bucket=bucket).get("Contents", []):
            objects[(bucket, item["Key"])] = store.get_object(Bucket=bucket, Key=item["Key"])[
                "Body"
            ].read()
    return {"runs": runs, "versions": versions, "aliases": aliases, "users": users,
            "objects": objects}  # fmt: skip


def _admin_users(team) -> list[dict]:
    from team.members import admin_client

    return admin_client(settings_of(team)).call("GET", "/api/2.0/mlflow/users/list")["users"]


def test_a_backup_restored_into_a_new_stack_has_the_same_contents(team, tmp_path):
    import mlflow

    repo, env = team["repo"], team["env"]
    # something of everything: a run with a metric and an artifact, a version with an alias,
    # a DVC object pushed to the remote
    alice = team["members"]["alice"]
    with logged_in(alice):
        client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("mnist").experiment_id
        run = client.create_run(experiment, tags={"mlflow.user": "alice"})
        client.log_metric(run.info.run_id, "test/accuracy", 0.9876)
        (tmp_path / "card.md").write_text("a model card")
        client.log_artifact(run.info.run_id, str(tmp_path / "card.md"), "model")
        version = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/model", run.info.run_id,
            tags={"registered_by": "alice", "test_accuracy": "0.9876"},
        )  # fmt: skip
        client.set_registered_model_alias(MODEL, "restored", version.version)
    (repo / "data" / "kept.bin").write_bytes(os.urandom(50_000))
    for command in (["dvc", "add", "data/kept.bin"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "kept data"], ["dvc", "push"]):  # fmt: skip
        done = _run(command, repo, env)
        assert done.returncode == 0, (command, done.stderr)
    before = _contents(team)
    assert before["objects"] and before["runs"] and before["aliases"]

    backup = tmp_path / "backup"
    done = _run([sys.executable, "-m", "team", "backup", str(backup)], repo, env)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["databases"]) == {"mlflow", "mlflow_auth"}
    assert all(oct(p.stat().st_mode & 0o077) == "0o0" for p in backup.rglob("*") if p.is_file())

    again = _run([sys.executable, "-m", "team", "backup", str(backup)], repo, env)
    assert again.returncode == 1 and "not an empty folder" in again.stderr

    with tiny_team_stack() as fresh:
        done = _run([sys.executable, "-m", "team", "restore", str(tmp_path / "nothing")],
                    fresh["repo"], fresh["env"])  # fmt: skip
        assert done.returncode == 1 and "no such folder" in done.stderr
        done = _run(
            [sys.executable, "-m", "team", "restore", str(backup)], fresh["repo"], fresh["env"]
        )
        assert done.returncode == 0, done.stderr
        after = _contents(fresh)
        assert after == before
        # the DVC remote's bytes come back to a clone of the project through dvc pull
        clone = tmp_path / "clone"
        assert _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env).returncode == 0
        config = (fresh["repo"] / ".dvc" / "config.local").read_text()
        (clone / ".dvc" / "config.local").write_text(config)
        pulled = _run(["dvc", "pull", "data/kept.bin"], clone, env)
        assert pulled.returncode == 0, pulled.stderr
        assert (clone / "data" / "kept.bin").read_bytes() == (
            repo / "data" / "kept.bin"
        ).read_bytes()
        # a restored member logs in with the password they had
        alice_again = {**fresh["env"], **alice,
                       "MLFLOW_TRACKING_URI": fresh["exports"]["MLFLOW_TRACKING_URI"]}  # fmt: skip
        lookup = "import mlflow; print(mlflow.MlflowClient().get_experiment_by_name('mnist'))"
        probe = _run([sys.executable, "-c", lookup], tmp_path, alice_again)
        assert probe.returncode == 0, probe.stderr
        # a damaged backup is refused before anything is touched
        from team.backup import _object_path

        card = next(k for k in manifest["objects"]["mlflow-artifacts"] if k.endswith("card.md"))
        damaged = _object_path(backup, "mlflow-artifacts", card)
        damaged.write_text("changed")
        done = _run(
            [sys.executable, "-m", "team", "restore", str(backup)], fresh["repo"], fresh["env"]
        )
        assert done.returncode == 1 and "does not match its checksum" in done.stderr


# --- load ----------------------------------------------------------------------------------------


def test_four_members_training_at_once_lose_no_run_and_no_metric(team, tmp_path):
    import csv

    import mlflow

    from factories.data import digit_images, write_prepared
    from factories.params import write_params
    from factories.processes import stage_args
    from harness.team_stack import add_member, add_shared

    add_shared(team, "experiment", "load")
    members = dict(team["members"])
    for name in ("carol", "dave"):
        members[name] = add_member(team["repo"], team["env"], name, "member", team["exports"])
    prepared = write_prepared(
        tmp_path / "prepared",
        {"train": digit_images(600, 1), "val": digit_images(100, 2), "test": digit_images(100, 3)},
    )
    train = {"hidden_units": [32], "epochs": 8, "batch_size": 32, "learning_rate": 0.01,
             "dropout": 0.0, "early_stopping_patience": 8, "experiment_name": "load"}  # fmt: skip
    params = write_params(tmp_path / "params.yaml", preprocess={"val_size": 100}, train=train)
    started = {}
    for name in ("alice", "bob", "carol", "dave"):
        out = tmp_path / name
        command = [
            sys.executable, "-m", "stages.train", "--params", str(params),
            *stage_args("train", {"prepared": prepared, "model": out / "model.keras",
                                  "history": out / "history.csv", "run_file": out / "run.json"}),
        ]  # fmt: skip
        env = {**team["env"], **members[name], "PYTHONPATH": str(team["repo"])}
        started[name] = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    for name, process in started.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (name, stderr[-3000:])

    with logged_in(admin_login(team)):
        client = mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("load").experiment_id
        runs = {run.data.tags["mlflow.user"]: run for run in client.search_runs([experiment])}
        assert sorted(runs) == ["alice", "bob", "carol", "dave"]
        for name, run in runs.items():
            assert run.info.status == "FINISHED", name
            with open(tmp_path / name / "history.csv") as history:
                rows = list(csv.DictReader(history))
            for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
                key = "val/" + column[4:] if column.startswith("val_") else "train/" + column
                logged = client.get_metric_history(run.info.run_id, key)
                assert sorted(m.step for m in logged) == list(range(1, len(rows) + 1)), (name, key)
                values = [m.value for m in sorted(logged, key=lambda m: m.step)]
                expected = [float(row[column]) for row in rows]  # the CSV keeps 6 decimals
                assert all(abs(a - b) < 2e-6 for a, b in zip(values, expected, strict=True))
        _assert_each_links_the_same_three_datasets(client, runs)


def _assert_each_links_the_same_three_datasets(client, runs: dict) -> None:
    """The runs logged the same data at once: one dataset row per split, linked to each."""
    linked = {
        name: sorted(
            (given.dataset.name, given.dataset.digest, given.tags[0].value)
            for given in client.get_run(run.info.run_id).inputs.dataset_inputs
        )
        for name, run in runs.items()
    }
    assert len(linked["alice"]) == 3, linked
    assert all(inputs == linked["alice"] for inputs in linked.values()), linked

"""Shared fixtures of the train / evaluate / export tests: tiny learnable digits, MLflow stores.

Loaded as a plugin (``pytest_plugins = ["ml_fixtures"]`` in the test modules), so the
session-scoped fixtures below exist once per test session: the tiny model is trained once
and evaluate and export reuse it.

Every test that touches MLflow points it at a temporary SQLite store and runs from the
store's folder (``tracking.artifact_location`` puts artifacts at ``workspace_root()``, i.e.
the working directory), and MLflow's process-wide tracking URI is reset afterwards.
A fresh SQLite store costs seconds of schema migrations, so one empty store is made per
session and copied for each test that needs its own.

PYTEST_DONT_REWRITE: the test modules import helpers from here before pytest loads it as a
plugin, and it holds no assertions to rewrite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import params_dict

from stages.atomic import write_npz
from stages.config import TrainParams, load_params
from stages.tracking import RunRef

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLIT_SIZES = {"train": 200, "val": 60, "test": 100}

# Small and quick, yet enough to learn the tiny digits below.
TINY_TRAIN = {"hidden_units": [16], "epochs": 3, "batch_size": 32, "learning_rate": 0.01,
              "dropout": 0.0, "early_stopping_patience": 2, "experiment_name": "tiny-tests"}
TINY_EXPORT = {"registered_model_name": "tiny-digits", "alias": "candidate"}
DVC_EXP_NAME = "tiny-exp"

# tracking.connect sets these in os.environ; set through monkeypatch they are undone after.
_MLFLOW_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                      "MLFLOW_DISABLE_TELEMETRY": "true"}


# --- tiny data and params ------------------------------------------------------------------------


def tiny_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dim noise plus a bright 8x4 block whose position is the label: learnable in seconds."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)  # every digit present
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = 3 + 12 * (label // 5), 1 + 5 * (label % 5)
        images[index, row:row + 8, col:col + 4] = rng.integers(180, 256, size=(8, 4))
    return images, labels


def tiny_splits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: tiny_split(count, seed + offset)
            for offset, (name, count) in enumerate(SPLIT_SIZES.items())}


def write_prepared(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """The three ``.npz`` files the preprocess stage writes."""
    for name, (x, y) in splits.items():
        write_npz(folder / f"{name}.npz", {"x": x, "y": y})
    return folder


def write_params(path: Path, **sections: dict) -> Path:
    path.write_text(yaml.safe_dump(params_dict(**sections), sort_keys=False), encoding="utf-8")
    return path


def tiny_params_file(path: Path) -> Path:
    return write_params(path, preprocess={"val_size": SPLIT_SIZES["val"]}, train=TINY_TRAIN,
                        export=TINY_EXPORT)


def train_params(**update: object) -> TrainParams:
    """The real params.yaml's train section made tiny, with ``update`` on top."""
    base = load_params(REPO_ROOT / "params.yaml").train
    tiny = {key: tuple(value) if isinstance(value, list) else value
            for key, value in TINY_TRAIN.items()}
    return base.model_copy(update={**tiny, "epochs": 2, **update})


# --- MLflow stores -------------------------------------------------------------------------------


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def _reset_mlflow() -> None:
    if "mlflow" not in sys.modules:
        return
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")
    # set_tracking_uri also wrote MLFLOW_TRACKING_URI; the monkeypatch undo restores it
    mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def using_store(folder: Path, uri: str, **env: str) -> Iterator[str]:
    """Run from ``folder`` with MLflow pointed at ``uri``; undo it all afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for key, value in {**_MLFLOW_CLIENT_ENV, **env}.items():
            patch.setenv(key, value)
        try:
            yield uri
        finally:
            _reset_mlflow()


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """``train.main`` installs a SIGTERM handler; the test process gets its own back."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated SQLite store to copy."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    with using_store(folder, sqlite_uri(folder)) as uri:
        import mlflow

        mlflow.MlflowClient(uri).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def tmp_mlflow_store(tmp_path: Path, mlflow_template_db: Path) -> Iterator[str]:
    """A store of this test's own in ``tmp_path``, which is also the working directory."""
    shutil.copyfile(mlflow_template_db, tmp_path / "mlflow.db")
    with using_store(tmp_path, sqlite_uri(tmp_path)) as uri:
        yield uri


# --- one tiny training per session ---------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """A project folder after ``python -m stages.train`` ran in it (paths relative to root)."""

    root: Path
    uri: str
    params: Path
    data_dir: Path
    model: Path
    history: Path
    run_file: Path
    ref: RunRef
    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    def store(self, **env: str) -> contextlib.AbstractContextManager[str]:
        return using_store(self.root, self.uri, **env)


def _git_repo(folder: Path) -> None:
    """A one-commit git repository, so the run's git_commit tag has something to name."""
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.invalid",
           "-c", "commit.gpgsign=false"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    subprocess.run([*git, "init", "-q"], cwd=folder, env=env, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "tiny"], cwd=folder, env=env,
                   check=True)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Workspace:
    """Prepared tiny data, then ``train.main`` as dvc.yaml calls it, into a temporary store."""
    from stages import train

    root = tmp_path_factory.mktemp("workspace")
    _git_repo(root)
    splits = tiny_splits()
    write_prepared(root / "data" / "prepared", splits)
    tiny_params_file(root / "params.yaml")
    shutil.copyfile(mlflow_template_db, root / "mlflow.db")
    uri = sqlite_uri(root)
    paths = {"data_dir": Path("data/prepared"), "model": Path("models/model.keras"),
             "history": Path("reports/history.csv"), "run_file": Path("models/run.json")}
    with using_store(root, uri, DVC_EXP_NAME=DVC_EXP_NAME), sigterm_kept():
        train.main(["--data-dir", str(paths["data_dir"]), "--model-out", str(paths["model"]),
                    "--history-out", str(paths["history"]), "--run-file", str(paths["run_file"])])
    absolute = {name: root / path for name, path in paths.items()}
    return Workspace(root=root, uri=uri, params=root / "params.yaml",
                     ref=RunRef.read(absolute["run_file"]), splits=splits, **absolute)

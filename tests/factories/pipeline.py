"""The whole pipeline on rendered digits: a local IDX "MNIST" whose digests the stages accept.

A ``sitecustomize`` on the stage processes' PYTHONPATH swaps the pinned MNIST digests for
those of the rendered digits, so fetch's real checks run on data made in the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from factories.data import digit_mnist, write_idx_folder
from harness.processes import run_in_repo
from harness.workspace import GIT_IDENTITY, project_copy
from stages.dataset.canonical import array_digest

SITECUSTOMIZE = """
import json, os
_spec = os.environ.get("E2E_MNIST_DIGESTS")
if _spec:
    import stages.dataset.canonical as _mnist
    with open(_spec) as _handle:
        _data = json.load(_handle)
    _mnist.DIGESTS.update(_data["digests"])
    _mnist.SHAPES.update({k: tuple(v) for k, v in _data["shapes"].items()})
"""


def rendered_mnist(root: Path, repo: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Write the digits under ``root``; return them and the environment the stages need."""
    arrays = digit_mnist(train=1200, test=200, seed=3)
    write_idx_folder(root / "idx", arrays)
    (root / "digests.json").write_text(
        json.dumps(
            {
                "digests": {name: array_digest(array) for name, array in arrays.items()},
                "shapes": {name: list(array.shape) for name, array in arrays.items()},
            }
        )
    )
    hooks = root / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        "PYTHONPATH": f"{hooks}{os.pathsep}{repo}",
        "E2E_MNIST_DIGESTS": str(root / "digests.json"),
    }
    return arrays, env


def tiny_pipeline_params(root: Path, experiment_name: str) -> dict[str, dict]:
    """params.yaml sections for the rendered digits: a small MLP, eight quick epochs."""
    return {
        "fetch": {"sources": ["local"], "local_path": str(root / "idx")},
        "preprocess": {"val_size": 100},
        "train": {
            "hidden_units": [128],
            "epochs": 8,
            "batch_size": 32,
            "learning_rate": 0.002,
            "early_stopping_patience": 0,
            "experiment_name": experiment_name,
        },
        # 200 test images: one image that int8 answers differently is already 0.5 points
        "quantize": {"max_accuracy_drop": 0.01, "min_agreement": 0.98},
    }


def repro_tiny_pipeline(root: Path) -> dict[str, Any]:
    """A git + DVC copy of the project under ``root`` on rendered digits, ``dvc repro`` run
    twice (the second must do nothing), MLflow on a SQLite store of its own."""
    repo, store = root / "repo", root / "store"
    store.mkdir()
    arrays, stage_env = rendered_mnist(root, repo)
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        **stage_env,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        **GIT_IDENTITY,
    }
    env.pop("DVC_EXP_NAME", None)
    project_copy(repo, env, params=tiny_pipeline_params(root, "e2e"))
    first = run_in_repo(["dvc", "repro"], repo, env)
    second = run_in_repo(["dvc", "repro"], repo, env)
    return {
        "repo": repo,
        "env": env,
        "arrays": arrays,
        "first": first,
        "second": second,
        "store": store,
    }
